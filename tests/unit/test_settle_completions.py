"""core.settle.settle_many's batch of completions only (issue 10): when every lease is intact,
no result is kept and the batch's estimate is far under its byte budget, the batch is applied
in one loop (``_all_completed``); every other batch goes outcome by outcome. Both end the
same: every job deleted with its lease entry and extension record, each topic counted, and a
batch near its budget cut as before."""

from __future__ import annotations

from typing import Any

import pytest

from quick_queue.core import settle_reads
from quick_queue.core.settle import settle_many
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, KeyValue, Transaction
from quick_queue.kv.errors import KVError
from quick_queue.models import LeasedJob
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.support.corekit import ITEM_LEASE, T0, US, Core, check_invariants

LATER = T0 + 20 * US  # an extension at this time pushes the lease to LATER + ITEM_LEASE


def _leased(core: Core, count: int) -> list[LeasedJob]:
    for n in range(count):
        core.enqueue("t", T0, topic=("mail", "sms")[n % 2])
    jobs = core.visit("t", T0, count=count)
    assert len(jobs) == count
    return jobs


def _done(job: LeasedJob, lease_at: int | None = None, reason: str = "") -> Outcome:
    return Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE, reason=reason,
                   topic=job.record.topic,
                   lease_at=job.record.at if lease_at is None else lease_at)


def test_a_batch_of_completions_deletes_every_job_and_counts_each_topic(db: Database) -> None:
    core = Core(db, Layout("completions"))
    jobs = _leased(core, 6)
    extended = jobs[1:3]  # their entries moved and they have an extension record
    assert core.extend([(j.tenant, j.record.job_id, j.token, j.record.at) for j in extended],
                       LATER) == [True, True]
    assert len(core.store().extensions) == 2
    outcomes = [_done(j, LATER + ITEM_LEASE if j in extended else None) for j in jobs]
    assert core.settle(outcomes, LATER) == [True] * 6
    s = core.store()
    assert (s.items, s.leased, s.extensions) == ({}, [], {})
    assert (s.stats[("mail", "completed")], s.stats[("sms", "completed")]) == (3, 3)
    check_invariants(s, LATER)


def test_a_batch_of_completions_with_a_stale_one_settles_the_others(db: Database) -> None:
    core = Core(db, Layout("completions-stale"))
    jobs = _leased(core, 4)
    outcomes = [_done(j) for j in jobs]
    outcomes[2] = Outcome("t", jobs[2].record.job_id, "not-the-token", OutcomeKind.DONE,
                          topic="mail", lease_at=jobs[2].record.at)
    assert core.settle(outcomes, T0) == [True, True, False, True]
    s = core.store()
    assert list(s.items) == [("t", jobs[2].record.job_id)]
    assert s.stats[("mail", "completed")] + s.stats[("sms", "completed")] == 3
    assert s.stats[("*", "stale")] == 1
    check_invariants(s, T0)


def test_completions_near_the_byte_budget_are_cut_as_one_by_one(db: Database) -> None:
    """Ten completions under a byte budget their transaction's size passes: the batch is cut
    once the size reaches the budget, and the next transactions take the rest."""
    core = Core(db, Layout("completions-budget"))
    jobs = _leased(core, 10)
    outcomes = [_done(j) for j in jobs]
    taken: list[list[bool]] = []
    while sum(map(len, taken)) < len(outcomes):
        rest = outcomes[sum(map(len, taken)):]

        def piece(tr: Transaction, rest: list[Outcome] = rest) -> list[bool]:
            return settle_many(tr, core.layout, rest, T0, 0, 3, budget=1_000)

        taken.append(db.transact(piece))
    assert len(taken) > 1 and all(all(p) for p in taken)
    s = core.store()
    assert s.items == {} and s.leased == []
    assert s.stats[("mail", "completed")] + s.stats[("sms", "completed")] == 10


class _CountedReads:
    """The engine's real transaction, its reads counted (a completion whose leased entry is
    found needs no other read; one that is not found reads its record)."""

    def __init__(self, tr: Transaction) -> None:
        self.tr = tr
        self.get_many_calls = 0
        self.get_calls = 0
        self.get_ranges_calls = 0
        self.many_keys: list[bytes] = []  # what get_many read

    def rounds(self) -> tuple[int, int, int]:
        """The calls of ``get_ranges``, ``get_many`` and ``get``."""
        return self.get_ranges_calls, self.get_many_calls, self.get_calls

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        self.get_ranges_calls += 1
        return self.tr.get_ranges(ranges)

    def get(self, key: bytes) -> bytes | None:
        self.get_calls += 1
        return self.tr.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        self.get_many_calls += 1
        self.many_keys += keys
        return self.tr.get_many(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tr, name)


def test_completions_of_tenants_and_lease_expiries_interleaved_find_their_entries(
    db: Database,
) -> None:
    """Jobs of two tenants leased at one time, then more of the first leased later (another
    expiry), their completions interleaved: each finds its leased entry in the batch's one
    read round, by key (no visit has RANGE_MIN completions in a row; none reads its record,
    the fallback for an entry not found)."""
    core = Core(db, Layout("completions-runs"))
    for tenant in ("a", "b", "a", "b"):
        core.enqueue(tenant, T0)
    first = core.visit("a", T0, count=2) + core.visit("b", T0, count=2)
    core.enqueue("a", T0)
    later = core.visit("a", T0 + US, count=1)
    assert len(first) == 4 and len(later) == 1 and later[0].record.at != first[0].record.at
    a1, a2, b1, b2 = first
    batch = [_done(j) for j in (a1, b1, later[0], a2, b2)]

    def run(tr: Transaction) -> tuple[list[bool], tuple[int, int, int]]:
        counted = _CountedReads(tr)
        applied = settle_many(counted, core.layout, batch, T0 + US, 0, 3)  # type: ignore[arg-type]
        return applied, counted.rounds()

    assert db.transact(run) == ([True] * 5, (0, 1, 0))
    s = core.store()
    assert (s.items, s.leased) == ({}, [])
    check_invariants(s, T0 + US)


@pytest.mark.parametrize(("sizes", "rounds"), [
    ((6, 6, 6), (1, 0, 0)),  # every visit by a range read, the flag with them
    ((6, 6, 1), (1, 1, 0)),  # the short visit by key, with the flag
])
def test_completions_of_visits_of_tenants_and_lease_expiries_find_their_entries(
    db: Database, sizes: tuple[int, int, int], rounds: tuple[int, int, int],
) -> None:
    """Visits of two tenants at one time, then a later visit of the first (another expiry),
    their completions one visit after another: a visit of RANGE_MIN completions or more is
    read by one range read, a shorter one by key; none reads its record."""
    core = Core(db, Layout("completions-visits"))
    for tenant, size in zip("ab", sizes[:2], strict=True):
        for _ in range(size):
            core.enqueue(tenant, T0)
    visits = [core.visit("a", T0, count=sizes[0]), core.visit("b", T0, count=sizes[1])]
    for _ in range(sizes[2]):
        core.enqueue("a", T0)
    visits.append(core.visit("a", T0 + US, count=sizes[2]))
    assert list(map(len, visits)) == list(sizes)
    batch = [_done(j) for j in visits[2] + visits[0] + visits[1]]

    def run(tr: Transaction) -> tuple[list[bool], tuple[int, int, int]]:
        counted = _CountedReads(tr)
        applied = settle_many(counted, core.layout, batch, T0 + US, 0, 3)  # type: ignore[arg-type]
        return applied, counted.rounds()

    assert db.transact(run) == ([True] * len(batch), rounds)
    s = core.store()
    assert (s.items, s.leased) == ({}, [])
    check_invariants(s, T0 + US)


def test_completions_of_ids_with_a_nul_or_beyond_ascii_find_their_entries(
    db: Database,
) -> None:
    """A job id is packed as the tuple layer packs a string (UTF-8, a NUL escaped): the
    batch's keys for ids with a NUL or non-ASCII characters are the ones their leases wrote."""
    core = Core(db, Layout("completions-ids"))
    ids = ["plain", "k:caf\u00e9 \u2713", "k:a\x00b", "k:\x00", "k:a\x00\xffb"]
    for job_id in ids:
        core.enqueue("t", T0, job_id=job_id)
    jobs = core.visit("t", T0, count=len(ids))
    assert sorted(j.record.job_id for j in jobs) == sorted(ids)

    def run(tr: Transaction) -> tuple[list[bool], tuple[int, int, int]]:
        counted = _CountedReads(tr)
        outcomes = [_done(j) for j in jobs]
        applied = settle_many(counted, core.layout, outcomes, T0, 0, 3)  # type: ignore[arg-type]
        return applied, counted.rounds()

    assert db.transact(run) == ([True] * len(ids), (1, 0, 0))
    s = core.store()
    assert (s.items, s.leased) == ({}, [])


def test_a_batch_of_completions_reads_in_one_round_the_dependency_flag_included(
    db: Database,
) -> None:
    # dependencies.settled's flag is read with the batch's leased entries (one statement a
    # settle commit on the embedded engine), not by a read of its own after them.
    core = Core(db, Layout("completions-reads"))
    jobs = _leased(core, 5)
    counted: list[_CountedReads] = []

    def settle(tr: Transaction) -> list[bool]:
        reads = _CountedReads(tr)
        counted.append(reads)
        return settle_many(reads, core.layout, [_done(j) for j in jobs],  # type: ignore[arg-type]
                           T0, 0, 3)

    assert db.transact(settle) == [True] * 5
    assert counted[-1].rounds() == (1, 0, 0)
    s = core.store()
    assert s.items == {} and s.leased == []
    check_invariants(s, T0)


def _by_entry(jobs: list[LeasedJob], layout: Layout) -> list[LeasedJob]:
    """The jobs of one visit in their leased entries' order."""
    return sorted(jobs, key=lambda j: layout.zone(j.tenant).leased_key(j.record.at,
                                                                        j.record.job_id))


def test_an_entry_written_between_a_visits_entries_after_the_read_is_not_cleared(
    db: Database,
) -> None:
    """A visit's completions are checked by one range read over their leased entries and
    cleared by one range clear: a key written inside that range after the read (here by
    hand) makes the settle's commit conflict, so its retry sees it and leaves it."""
    core = Core(db, Layout("completions-span"))
    jobs = _by_entry(_leased(core, 6), core.layout)
    zone = core.layout.zone("t")
    stranger = zone.leased_key(jobs[0].record.at, jobs[0].record.job_id + "~")
    assert zone.leased_key(jobs[0].record.at, jobs[0].record.job_id) < stranger < (
        zone.leased_key(jobs[1].record.at, jobs[1].record.job_id))
    outcomes = [_done(j) for j in jobs]
    tr = db.create_transaction()
    assert settle_many(tr, core.layout, outcomes, T0, 0, 3) == [True] * 6
    db.transact(lambda other: other.set(stranger, b"someone-else"))
    with pytest.raises(KVError) as caught:
        tr.commit()
    assert caught.value.code == 1020
    assert core.settle(outcomes, T0) == [True] * 6
    s = core.store()
    assert s.items == {} and s.leased == [("t", jobs[0].record.at, jobs[0].record.job_id + "~")]


def test_a_running_job_between_the_batchs_entries_keeps_its_lease(db: Database) -> None:
    """Completions of a visit's first and last jobs (by leased entry) while the jobs between
    still run: their range read meets the running ones' entries, which stay, leased."""
    core = Core(db, Layout("completions-between"))
    jobs = _by_entry(_leased(core, 8), core.layout)
    done = jobs[:3] + jobs[5:]
    assert core.settle([_done(j) for j in done], T0) == [True] * 6
    s = core.store()
    assert sorted(s.leased) == sorted(("t", j.record.at, j.record.job_id) for j in jobs[3:5])
    assert set(s.items) == {("t", j.record.job_id) for j in jobs[3:5]}
    check_invariants(s, T0)


def test_a_range_read_cut_by_its_limit_reads_the_rest_by_key(
    db: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no spare rows, the range from a visit's first to its last completed entry (seven
    running jobs between) is cut at twice the completions: the entry past its last row is
    read by its key, not taken for lost (which would read the job's record)."""
    monkeypatch.setattr(settle_reads, "RANGE_SPARE", 0)
    core = Core(db, Layout("completions-cut"))
    jobs = _by_entry(_leased(core, 12), core.layout)
    zone = core.layout.zone("t")
    done = jobs[:4] + jobs[11:]

    def run(tr: Transaction) -> tuple[list[bool], list[bytes]]:
        counted = _CountedReads(tr)
        outcomes = [_done(j) for j in done]
        applied = settle_many(counted, core.layout, outcomes, T0, 0, 3)  # type: ignore[arg-type]
        return applied, counted.many_keys

    applied, read_by_key = db.transact(run)
    assert applied == [True] * 5
    assert read_by_key == [zone.leased_key(jobs[11].record.at, jobs[11].record.job_id)]
    s = core.store()
    assert sorted(s.leased) == sorted(("t", j.record.at, j.record.job_id) for j in jobs[4:11])
    check_invariants(s, T0)
