"""Issue 14, engines at scale: a settle or extension batch reads its keys together (one round
of parallel reads, not one round trip per job), and is cut by bytes, not counts, so a batch of
jobs with large payloads commits in pieces below FoundationDB's limits on every engine.

Every test runs on the embedded engine and, with ``QUICK_QUEUE_FDB_CLUSTER_FILE`` set, on the
FoundationDB cluster (the ``db`` fixture's fdb leg). Reads are counted by ``Counting``, a thin
wrapper around the engine's real transaction (it counts, then calls the real method).
"""

from __future__ import annotations

from typing import Any

import pytest

from quick_queue.core.settle import BATCH_BYTES, extend_leases, settle_many
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, KeyValue, ReadView, Transaction
from quick_queue.kv.errors import TRANSACTION_TOO_LARGE, KVError
from quick_queue.models import LeasedJob
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.support.corekit import T0, US, Core, check_invariants

BIG = "x" * 20_000  # a 20 kB payload
FDB_ADVICE = 1_000_000  # FoundationDB advises transactions under 1 MB


class _CountingReads(ReadView):
    def __init__(self, inner: ReadView, counts: dict[str, int]) -> None:
        self.inner, self.counts = inner, counts

    def get(self, key: bytes) -> bytes | None:
        self.counts["get"] += 1
        return self.inner.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        self.counts["get_many"] += 1
        return self.inner.get_many(keys)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self.counts["get_range"] += 1
        return self.inner.get_range(begin, end, limit=limit, reverse=reverse)

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        self.counts["get_ranges"] += 1
        return self.inner.get_ranges(ranges)


class Counting(_CountingReads):
    """The engine's real transaction, its reads counted (a round trip each on FoundationDB:
    ``get`` one key, ``get_many`` all its keys at once). Everything else goes straight to it."""

    def __init__(self, inner: Transaction) -> None:
        super().__init__(inner, {"get": 0, "get_many": 0, "get_range": 0, "get_ranges": 0})
        self.tr = inner
        self.snapshot = _CountingReads(inner.snapshot, self.counts)

    def get_approximate_size(self) -> int:
        self.counts["size"] = self.counts.get("size", 0) + 1
        return self.tr.get_approximate_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tr, name)


def _counted(db: Database, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, int]]:
    def run(tr: Transaction) -> tuple[Any, dict[str, int]]:
        counting = Counting(tr)
        return fn(counting, *args, **kwargs), counting.counts

    result: tuple[Any, dict[str, int]] = db.transact(run)
    return result


def _leased(core: Core, count: int, payload: Any = None, tenants: int = 1) -> list[LeasedJob]:
    """``count`` jobs leased at T0 (enqueued and taken 30 at a time: 20 kB payloads would make
    one transaction for all of them too large to commit)."""
    for start in range(0, count, 30):
        core.enqueue_jobs([core.job(f"t{i % tenants}", T0, payload=payload)
                           for i in range(start, min(count, start + 30))], T0)
    taken: list[LeasedJob] = []
    for tenant in range(tenants):
        while batch := core.take(f"t{tenant}", T0, count=30):
            taken += batch
    assert len(taken) == count
    return taken


def _retry(job: LeasedJob, at: int) -> Outcome:
    return Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.RETRY, at=at,
                   reason="boom", topic=job.record.topic, lease_at=job.record.at)


def test_a_settle_batch_reads_its_records_together(db: Database) -> None:
    core = Core(db, Layout("scale-reads"))
    jobs = _leased(core, 150, tenants=3)
    outcomes = [_retry(job, T0 + 5 * US) for job in jobs]
    applied, counts = _counted(db, settle_many, core.layout, outcomes, T0, 0, 3,
                               budget=BATCH_BYTES)
    assert applied == [True] * 150
    # one round per 64 records (the markers of the 3 zones ride along); a zone whose marker
    # promises a later visit reads its pointer record once (touch_pointer); one more read per
    # batch at most (the dependencies flag of core.dependencies)
    assert counts["get_many"] <= 4 and counts["get"] <= 3 + 1, counts
    # small records: the size is asked for a few times, not once per outcome
    assert counts.get("size", 0) <= 3, counts
    check_invariants(core.store(), T0)


def test_completions_and_their_fallbacks_read_in_rounds(db: Database) -> None:
    core = Core(db, Layout("scale-done"))
    jobs = _leased(core, 100)
    # half of them with the lease expiry the worker knows (fast path), half without
    outcomes = [
        Outcome(j.tenant, j.record.job_id, j.token, OutcomeKind.DONE,
                lease_at=j.record.at if i % 2 else 0)
        for i, j in enumerate(jobs)
    ]
    applied, counts = _counted(db, settle_many, core.layout, outcomes, T0, 0, 3)
    assert applied == [True] * 100
    # two rounds: the visit's entries of the fast half by one range read, with the
    # dependencies' flag (core.settle_reads), and the other half's records
    assert counts["get"] <= 1 and counts["get_range"] == 0, counts  # (1: see above)
    assert (counts["get_ranges"], counts["get_many"]) == (1, 1), counts
    assert core.store().items == {}


def test_an_extension_batch_reads_together(db: Database) -> None:
    core = Core(db, Layout("scale-extend"))
    jobs = _leased(core, 120, tenants=2)
    leases = [(j.tenant, j.record.job_id, j.token) for j in jobs]
    kept, counts = _counted(db, extend_leases, core.layout, leases, T0 + 10 * US, 30 * US)
    assert kept == [True] * 120
    assert counts["get"] == 0 and counts["get_many"] == 1, counts


def _in_pieces(db: Database, fn: Any, items: list[Any], *args: Any) -> list[list[bool]]:
    """Run ``fn(tr, items[done:], *args, budget=BATCH_BYTES)`` in one transaction after another,
    as the settler and the keeper do, until every item is taken; each piece's result. Asserts
    that no transaction grew past FoundationDB's advice."""
    pieces: list[list[bool]] = []
    done = 0

    def piece(tr: Transaction) -> tuple[list[bool], int]:
        result = fn(tr, items[done:], *args, budget=BATCH_BYTES)
        return result, tr.get_approximate_size()

    while done < len(items):
        result, size = db.transact(piece)
        assert result and size < FDB_ADVICE * 1.25, (len(result), size)
        pieces.append(result)
        done += len(result)
    return pieces


def test_a_settle_batch_too_large_for_one_transaction_commits_in_pieces(db: Database) -> None:
    """512 retries of 20 kB jobs rewrite about 10.5 MB of records: past FoundationDB's limit
    (and the embedded engine's) in one transaction; cut by bytes they commit in pieces."""
    core = Core(db, Layout("scale-settle"))
    jobs = _leased(core, 512, BIG)
    layout, at = core.layout, T0 + 5 * US
    outcomes = [_retry(job, at) for job in jobs]
    with pytest.raises(KVError) as refused:
        db.transact(settle_many, layout, outcomes, T0, 0, 3)
    assert refused.value.code == TRANSACTION_TOO_LARGE
    pieces = _in_pieces(
        db, lambda tr, rest, *a, budget: settle_many(tr, layout, rest, *a, budget=budget),
        outcomes, T0, 0, 3)
    assert len(pieces) >= 10 and all(all(p) for p in pieces)
    s = core.store()
    assert len(s.scheduled) == 512 and s.leased == []
    assert all(r.state == "s" and r.error == "boom" for r in s.items.values())
    check_invariants(s, T0)


def test_an_extension_batch_of_large_jobs_commits(db: Database) -> None:
    """500 leases of 20 kB jobs: extended without a transaction past the advised size, and
    every one of them really extended."""
    core = Core(db, Layout("scale-ext-big"))
    jobs = _leased(core, 500, BIG)
    layout, now = core.layout, T0 + 10 * US
    leases = [(j.tenant, j.record.job_id, j.token) for j in jobs]
    pieces = _in_pieces(
        db, lambda tr, rest, *a, budget: extend_leases(tr, layout, rest, *a, budget=budget),
        leases, now, 30 * US)
    assert sum(len(p) for p in pieces) == 500 and all(all(p) for p in pieces)
    s = core.store()
    assert sorted(at for _, at, _ in s.leased) == [now + 30 * US] * 500
    check_invariants(s, now)


def test_the_reaper_reads_a_zones_due_and_expired_jobs_in_two_rounds(db: Database) -> None:
    """``promote_due`` (in every zone visit) moves due scheduled jobs and expired leases back
    to ready: their records are read together, one round per index."""
    core = Core(db, Layout("scale-promote"))
    expired = _leased(core, 60)
    later = expired[0].record.at + US
    core.enqueue_jobs([core.job("t0", later - US // 2) for _ in range(60)], T0)  # scheduled
    taken, counts = _counted(db, core.dequeue_fn(10), "t0", None, later)
    assert len(taken) == 10
    assert counts["get"] <= 3 and counts["get_many"] <= 4, counts
    check_invariants(core.store(), later)
