"""Races between core transactions, built by hand: both transactions are opened and do all their
reads and writes, then commit in one order and in the other. The loser must get
``not_committed`` (1020); after it retries, the invariants of DESIGN.md §4 hold. Also: key=
idempotency when a commit's result is unknown (1021)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quick_queue.core.enqueue import NewJob, enqueue
from quick_queue.core.pointers import EMPTY
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import KVError
from quick_queue.kv.faults import FaultyDatabase
from tests.support.corekit import ITEM_LEASE, MIN_INACTIVE, T0, US, Core, check_invariants

Step = Callable[[Transaction], object]


def race(db: Database, a: Step, b: Step, order: str) -> str:
    """Run ``a`` and ``b`` in two open transactions, commit in ``order`` ("ab" or "ba"), and
    retry the loser in the retry loop. Returns the name of the loser ("" if both committed)."""
    trs = {"a": db.create_transaction(), "b": db.create_transaction()}
    steps = {"a": a, "b": b}
    for name in "ab":
        steps[name](trs[name])
    loser = ""
    for name in order:
        try:
            trs[name].commit()
        except KVError as error:
            assert error.code == 1020, error
            assert not loser, "both transactions lost"
            loser = name
    if loser:
        db.transact(steps[loser])
    return loser


def _zone_is_pointed_to(core: Core, tenant: str, now: int) -> None:
    s = core.store()
    assert s.tenants_with_jobs() == {tenant}
    assert tenant in s.markers and tenant in s.pointers
    assert [t for _, t in s.due].count(tenant) == 1
    check_invariants(s, now)


def _reachable(core: Core, tenant: str, job_id: str, now: int) -> None:
    """The job was taken by the consumer's retry, or its zone hands it out at its due time."""
    s = core.store()
    check_invariants(s, now)
    record = s.items[(tenant, job_id)]
    if record.state == "l":
        return
    due = max(now, record.at)
    pointer = s.pointers[tenant]
    assert pointer.token is None and pointer.vesting <= due
    taken = core.visit(tenant, due, count=100)
    assert job_id in [j.record.job_id for j in taken]


def _emptied_zone(
    core: Core, min_inactive_from_now: bool, one_step: bool
) -> tuple[int, str | None]:
    """A zone with a pointer and no job, due for collection, and a consumer holding its lease
    (or, ``one_step``, about to take it in its dequeue transaction: token None). Returns (now,
    zone token). With ``min_inactive_from_now`` the zone was parked (marker EMPTY) before;
    otherwise its marker still promises the old lease expiry."""
    core.enqueue("t", T0)
    [job] = core.visit("t", T0)
    assert core.done(job, T0)
    now = T0 + ITEM_LEASE
    if min_inactive_from_now:
        core.min_inactive = 2 * MIN_INACTIVE
        assert core.visit("t", now) == []
        assert core.store().markers["t"] == EMPTY
        now = core.store().pointers["t"].vesting
    if one_step:
        return now, None
    token = core.lease("t", now)
    assert token is not None
    return now, token


# The consumer either holds a zone lease taken earlier (DESIGN.md's two steps) or takes the
# zone inside its dequeue transaction (zone token None: the runtime's one step).
MODES = ["two-step", "one-step"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("parked", [False, True])
@pytest.mark.parametrize("delay", [0, 10 * US, 1000 * US])
@pytest.mark.parametrize("order", ["ab", "ba"])
def test_collection_racing_enqueue_never_orphans_a_zone(
    db: Database, order: str, delay: int, parked: bool, mode: str
) -> None:
    core = Core(db, Layout("collect"))
    now, token = _emptied_zone(core, parked, mode == "one-step")
    collect = core.dequeue_fn(count=1)
    job = core.job("t", now + delay)

    def consumer(tr: Transaction) -> object:
        return collect(tr, "t", token, now)

    def producer(tr: Transaction) -> object:
        return enqueue(tr, core.layout, job, now, core.slack)

    # alone, the consumer would collect the pointer
    probe = db.create_transaction()
    assert consumer(probe) == []
    probe.reset()

    loser = race(db, consumer, producer, order)
    assert loser == order[1], "the second committer must conflict"
    _zone_is_pointed_to(core, "t", now)
    _reachable(core, "t", job.job_id, now)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("setup", ["lease-parks", "drain-parks", "drain-collects"])
@pytest.mark.parametrize("delay", [0, 5 * US, 29 * US])
@pytest.mark.parametrize("order", ["ab", "ba"])
def test_parking_racing_enqueue_keeps_the_promise(
    db: Database, order: str, delay: int, setup: str, mode: str
) -> None:
    """A consumer about to push the zone's pointer later (its ready work is gone) and a
    producer adding a job due before that: whichever commits first, the job's zone is due in
    time."""
    core = Core(db, Layout("park"), min_inactive=MIN_INACTIVE if setup != "drain-parks"
                else 2 * MIN_INACTIVE)
    core.enqueue("t", T0)
    now = T0
    if setup != "lease-parks":  # empty the zone first; its next visit parks or collects it
        [job] = core.visit("t", T0)
        core.done(job, T0)
        now = T0 + ITEM_LEASE
    token = core.lease("t", now) if mode == "two-step" else None
    assert token is not None or mode == "one-step"
    take = core.dequeue_fn(count=1)
    new = core.job("t", now + delay)

    def consumer(tr: Transaction) -> object:
        return take(tr, "t", token, now)

    def producer(tr: Transaction) -> object:
        return enqueue(tr, core.layout, new, now, core.slack)

    loser = race(db, consumer, producer, order)
    assert loser == order[1]
    _zone_is_pointed_to(core, "t", now)
    _reachable(core, "t", new.job_id, now)


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_producers_do_not_conflict_with_each_other(db: Database, order: str) -> None:
    core = Core(db, Layout("producers"))
    core.enqueue("t", T0)
    jobs = [core.job("t", T0 + d) for d in (0, 5 * US)]

    def producer(n: int) -> Step:
        return lambda tr: enqueue(tr, core.layout, jobs[n], T0, core.slack)

    assert race(db, producer(0), producer(1), order) == ""
    check_invariants(core.store(), T0)


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_producer_does_not_conflict_with_a_consumer_of_a_busy_zone(
    db: Database, order: str
) -> None:
    core = Core(db, Layout("busy"))
    for n in range(5):
        core.enqueue("t", T0 + n)
    token = core.lease("t", T0 + 10)
    assert token is not None
    take = core.dequeue_fn(count=2)
    job = core.job("t", T0 + 10)

    def consumer(tr: Transaction) -> object:
        return take(tr, "t", token, T0 + 10)

    def producer(tr: Transaction) -> object:
        return enqueue(tr, core.layout, job, T0 + 10, core.slack)

    assert race(db, consumer, producer, order) == ""
    check_invariants(core.store(), T0 + 10)


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_racing_keyed_enqueues_make_one_job(db: Database, order: str) -> None:
    core = Core(db, Layout("keyed"))
    jobs = [core.job("t", T0, key="k", payload=n) for n in range(2)]

    def producer(n: int) -> Step:
        return lambda tr: enqueue(tr, core.layout, jobs[n], T0, core.slack)

    assert race(db, producer(0), producer(1), order) == order[1]
    s = core.store()
    assert list(s.items) == [("t", "k:k")]
    assert s.items[("t", "k:k")].payload == int(order[0] == "b")
    assert len(s.ready) == 1
    check_invariants(s, T0)


def test_keyed_enqueue_survives_an_unknown_commit_result(db: Database) -> None:
    """1021 after a commit that really happened: the retry finds the job and writes nothing."""
    faulty = FaultyDatabase(db, seed=3, unknown_result=1.0)
    layout = Layout("unknown")
    job = NewJob("t", "k:order-7", "mail", {"n": 1}, 100, 3, T0, "order-7")
    attempts: list[int] = []

    def fn(tr: Transaction) -> str:
        attempts.append(1)
        if len(attempts) > 1:
            faulty.set_rates(unknown_result=0.0)  # never loop forever, whatever happens
        return enqueue(tr, layout, job, T0, 0)

    assert faulty.transact(fn) == job.job_id
    assert len(attempts) == 2
    assert faulty.injected["unknown_result"] == 1
    core = Core(db, layout)
    s = core.store()
    assert list(s.items) == [("t", job.job_id)]
    assert len(s.ready) == 1
    assert s.stats[("mail", "enqueued")] == 1  # counted once: the retry wrote nothing
    check_invariants(s, T0)


def test_unkeyed_enqueue_is_idempotent_per_job_id_too(db: Database) -> None:
    """Without a key the id is still made outside the retried function, and enqueue checks
    for it: the retry after a 1021 that committed writes nothing (one record, counted once),
    so it cannot reset a job a consumer leased in between."""
    faulty = FaultyDatabase(db, seed=3, unknown_result=1.0)
    layout = Layout("unkeyed")
    job = NewJob("t", "j1", "mail", None, 100, 3, T0)
    attempts: list[int] = []

    def fn(tr: Transaction) -> str:
        attempts.append(1)
        if len(attempts) > 1:
            faulty.set_rates(unknown_result=0.0)
        return enqueue(tr, layout, job, T0, 0)

    faulty.transact(fn)
    assert len(attempts) == 2
    s = Core(db, layout).store()
    assert len(s.items) == 1 and s.stats[("mail", "enqueued")] == 1


def test_retry_after_an_unknown_result_does_not_reset_a_leased_job(db: Database) -> None:
    """The 1021'd enqueue did commit and a consumer leased the job before the producer's
    retry: the retry leaves the lease alone (no second copy, no reset to ready)."""
    core = Core(db, Layout("reset"))
    job = core.job("t", T0)
    core.enqueue_jobs([job], T0)  # the commit that "may not have happened"
    [leased] = core.visit("t", T0)
    before = core.dump()
    assert db.transact(enqueue, core.layout, job, T0 + 1, 0) == job.job_id  # the retry
    assert core.dump() == before
    assert core.done(leased, T0 + 2)
