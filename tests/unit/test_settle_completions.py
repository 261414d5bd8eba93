"""core.settle.settle_many's batch of completions only (issue 10): when every lease is intact,
no result is kept and the batch's estimate is far under its byte budget, the batch is applied
in one loop (``_all_completed``); every other batch goes outcome by outcome. Both end the
same: every job deleted with its lease entry and extension record, each topic counted, and a
batch near its budget cut as before."""

from __future__ import annotations

from quick_queue.core.settle import settle_many
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
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
