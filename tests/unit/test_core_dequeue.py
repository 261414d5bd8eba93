"""core.dequeue: lease ready jobs, promote due ones, release or collect the zone (DESIGN.md §4,
transactions 4 and 8)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quick_queue.kv as kv
from quick_queue.core.dequeue import ZoneLeaseLost, ZoneNotDue
from quick_queue.core.pointers import ASAP, EMPTY, lease_zone
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.kv.errors import KVError
from tests.support.corekit import (
    ITEM_LEASE,
    MIN_INACTIVE,
    T0,
    US,
    ZONE_LEASE,
    Core,
    check_invariants,
)


def test_priority_then_fifo(core: Core) -> None:
    order = [(5, "a"), (1, "b"), (5, "c"), (1, "d"), (3, "e"), (0, "f")]
    ids = {}
    for n, (priority, name) in enumerate(order):
        ids[name] = core.enqueue("t", T0 + n, priority=priority)
    taken = core.visit("t", T0 + 10, count=10)
    got = [job.record.job_id for job in taken]
    assert got == [ids[n] for n in "fbdeac"]
    assert [job.record.priority for job in taken] == [0, 1, 1, 3, 5, 5]


def test_same_time_ties_break_by_id(core: Core) -> None:
    ids = [core.enqueue("t", T0, job_id=name) for name in ("m", "b", "z", "a")]
    taken = core.visit("t", T0, count=10)
    assert [j.record.job_id for j in taken] == sorted(ids)


def test_count_limits_and_ready_work_keeps_the_zone_due(core: Core) -> None:
    ids = [core.enqueue("t", T0 + n) for n in range(5)]
    taken = core.visit("t", T0 + 10, count=2)
    assert [j.record.job_id for j in taken] == ids[:2]
    s = core.store()
    assert [r[3] for r in s.ready] == ids[2:]
    assert s.markers["t"] == ASAP
    p = s.pointers["t"]
    assert p.token is None and p.vesting == T0 + 10
    check_invariants(s, T0 + 10)
    assert [j.record.job_id for j in core.visit("t", T0 + 11, count=10)] == ids[2:]


def test_leased_record(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=2)
    [job] = core.visit("t", T0 + 7, count=1)
    assert job.tenant == "t"
    r = job.record
    assert (r.job_id, r.state, r.at, r.attempt) == (job_id, "l", T0 + 7 + ITEM_LEASE, 1)
    assert job.token == r.token and r.token
    s = core.store()
    assert s.ready == [] and s.leased == [("t", T0 + 7 + ITEM_LEASE, job_id)]
    assert s.items[("t", job_id)].token == job.token
    # the zone now waits for the lease to expire (in case the worker dies)
    assert s.pointers["t"].vesting == T0 + 7 + ITEM_LEASE
    assert s.markers["t"] == T0 + 7 + ITEM_LEASE
    check_invariants(s, T0 + 7)


def test_tokens_are_fresh(core: Core) -> None:
    for n in range(5):
        core.enqueue("t", T0 + n)
    taken = core.visit("t", T0 + 5, count=5)
    assert len({j.token for j in taken}) == 5


def test_scheduled_job_is_promoted_when_due_and_not_before(core: Core) -> None:
    early = core.enqueue("t", T0)
    later = core.enqueue("t", T0, delay=10 * US)
    [job] = core.visit("t", T0, count=10)
    assert job.record.job_id == early
    core.done(job, T0)
    # A lease on the zone (the pointer vests at the lease expiry of `early`, so force a visit
    # by enqueueing ready work) must not pick `later` a microsecond early.
    other = core.enqueue("t", T0 + 10 * US - 1)
    taken = core.visit("t", T0 + 10 * US - 1, count=10)
    assert [j.record.job_id for j in taken] == [other]
    s = core.store()
    assert s.items[("t", later)].state == "s"
    assert s.pointers["t"].vesting == T0 + 10 * US  # parked until `later` is due
    check_invariants(s, T0 + 10 * US - 1)
    [job] = core.visit("t", T0 + 10 * US, count=10)
    assert job.record.job_id == later
    assert job.record.seq == T0 + 10 * US  # FIFO position: when it became due


def test_promoted_jobs_keep_priority_order(core: Core) -> None:
    low = core.enqueue("t", T0, priority=9)
    high_later = core.enqueue("t", T0, delay=US, priority=1)
    taken = core.visit("t", T0 + US, count=10)
    assert [j.record.job_id for j in taken] == [high_later, low]


def test_expired_lease_comes_back_with_an_attempt_spent(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=3, topic="x")
    [first] = core.visit("t", T0)
    expiry = first.record.at
    assert core.visit("t", expiry - 1) == []  # not due: the pointer waits for the expiry
    token = core.lease("t", expiry - 1) or core.lease("t", expiry)
    assert token is not None
    taken = core.dequeue("t", token, expiry)
    assert [j.record.job_id for j in taken] == [job_id]
    again = taken[0]
    assert again.record.attempt == 2 and again.token != first.token
    assert again.record.error is not None and "lease expired" in again.record.error
    assert core.stat("x", "lease_expired") == 1
    check_invariants(core.store(), expiry)


def test_lease_not_yet_expired_is_not_taken(core: Core) -> None:
    core.enqueue("t", T0)
    [first] = core.visit("t", T0)
    core.enqueue("t", T0 + ITEM_LEASE - 1)
    taken = core.visit("t", T0 + ITEM_LEASE - 1, count=10)
    assert first.record.job_id not in [j.record.job_id for j in taken]
    assert core.store().items[("t", first.record.job_id)].token == first.token


def test_expired_lease_keeps_its_fifo_position(core: Core) -> None:
    a = core.enqueue("t", T0)
    [job] = core.visit("t", T0, count=1)
    assert job.record.job_id == a
    b = core.enqueue("t", T0 + 1)
    taken = core.visit("t", T0 + ITEM_LEASE, count=10)
    assert [j.record.job_id for j in taken] == [a, b]


def test_lease_expiring_on_the_last_attempt_dead_letters_the_job(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=1)
    now = T0
    for attempt in (1, 2):
        [job] = core.visit("t", now)
        assert job.record.attempt == attempt
        now = job.record.at  # the worker dies: the lease just runs out
    assert core.visit("t", now) == []
    s = core.store()
    assert s.items == {}
    dead = s.dead[("t", job_id)]
    assert dead.kind == "lease_expired" and dead.attempt == 2
    assert "2 attempts" in dead.reason
    check_invariants(s, now)


def test_release_vests_at_the_next_scheduled_time(core: Core) -> None:
    core.enqueue("t", T0)
    core.enqueue("t", T0, delay=60 * US)
    [job] = core.visit("t", T0, count=10)
    core.done(job, T0)
    assert core.store().pointers["t"].vesting == T0 + ITEM_LEASE
    # at the lease expiry nothing is leased any more: the zone waits for the scheduled job
    assert core.visit("t", T0 + ITEM_LEASE) == []
    s = core.store()
    assert s.pointers["t"].vesting == T0 + 60 * US and s.markers["t"] == T0 + 60 * US
    check_invariants(s, T0 + ITEM_LEASE)


def test_release_vests_at_the_earliest_lease_expiry(core: Core) -> None:
    core.enqueue("t", T0)
    core.enqueue("t", T0, delay=60 * US)
    core.visit("t", T0, count=10)
    s = core.store()
    assert s.pointers["t"].vesting == T0 + ITEM_LEASE  # before the scheduled job
    assert s.pointers["t"].token is None


def test_empty_zone_is_parked_then_collected(db: Database) -> None:
    core = Core(db, Layout("park"), min_inactive=2 * MIN_INACTIVE)
    job_id = core.enqueue("t", T0)
    [job] = core.visit("t", T0)
    core.done(job, T0)
    t1 = T0 + ITEM_LEASE
    assert core.visit("t", t1) == []
    s = core.store()
    assert s.markers["t"] == EMPTY
    assert s.pointers["t"].vesting == t1 + 2 * MIN_INACTIVE
    assert s.pointers["t"].last_active == T0
    check_invariants(s, t1)
    assert core.lease("t", t1 + 2 * MIN_INACTIVE - 1) is None
    assert core.visit("t", t1 + 2 * MIN_INACTIVE) == []
    s = core.store()
    assert s.markers == {} and s.pointers == {} and s.due == []
    assert job_id not in {j for _, j in s.items}


def test_collection_needs_min_inactive(db: Database) -> None:
    core = Core(db, Layout("inactive"), min_inactive=10 * US)
    core.enqueue("t", T0)
    core.enqueue("t", T0, delay=5 * US)
    [a, b] = core.visit("t", T0 + 5 * US, count=10)
    core.done(a, T0 + 5 * US)
    core.done(b, T0 + 5 * US)
    t1 = T0 + 5 * US + ITEM_LEASE
    assert core.visit("t", t1) == []  # inactive for ITEM_LEASE >= min_inactive: collected
    assert core.store().pointers == {}


def test_zone_with_future_work_is_never_collected(core: Core) -> None:
    job_id = core.enqueue("t", T0, delay=10 * MIN_INACTIVE)
    core.enqueue("t", T0)
    [job] = core.visit("t", T0, count=1)
    core.done(job, T0)
    t1 = T0 + ITEM_LEASE + MIN_INACTIVE
    assert core.visit("t", T0 + ITEM_LEASE) == []
    assert core.lease("t", t1) is None  # parked until the scheduled job, not collected
    s = core.store()
    assert s.pointers["t"].vesting == T0 + 10 * MIN_INACTIVE
    assert s.items[("t", job_id)].state == "s"
    check_invariants(s, t1)


def test_zone_with_a_running_job_is_never_collected(db: Database) -> None:
    core = Core(db, Layout("running"), item_lease=10 * MIN_INACTIVE)
    core.enqueue("t", T0)
    [job] = core.visit("t", T0, count=1)
    core.enqueue("t", T0 + MIN_INACTIVE)
    [other] = core.visit("t", T0 + MIN_INACTIVE)
    core.done(other, T0 + MIN_INACTIVE)
    assert core.store().pointers["t"].vesting == T0 + 10 * MIN_INACTIVE
    check_invariants(core.store(), T0 + 3 * MIN_INACTIVE)
    assert core.done(job, T0 + 3 * MIN_INACTIVE)


def test_dead_letters_do_not_keep_a_zone(core: Core) -> None:
    from quick_queue.outcomes import Outcome

    job_id = core.enqueue("t", T0)
    [job] = core.visit("t", T0)
    core.settle([Outcome("t", job_id, job.token, "discard", reason="bad")], T0)
    assert core.visit("t", T0 + ITEM_LEASE + MIN_INACTIVE) == []
    s = core.store()
    assert s.pointers == {} and list(s.dead) == [("t", job_id)]


def test_wrong_zone_token_changes_nothing(core: Core) -> None:
    core.enqueue("t", T0)
    token = core.lease("t", T0)
    assert token is not None
    before = core.dump()
    with pytest.raises(ZoneLeaseLost):
        core.dequeue("t", "not-the-token", T0)
    with pytest.raises(ZoneLeaseLost):
        core.dequeue("nobody", token, T0)
    assert core.dump() == before
    # the lease expired and another consumer took the zone: the first holder is fenced off
    newer = core.lease("t", T0 + ZONE_LEASE)
    assert newer is not None
    before = core.dump()
    with pytest.raises(ZoneLeaseLost):
        core.dequeue("t", token, T0 + ZONE_LEASE)
    assert core.dump() == before
    assert len(core.dequeue("t", newer, T0 + ZONE_LEASE)) == 1


def test_expired_zone_lease_still_works_if_nobody_took_it(core: Core) -> None:
    core.enqueue("t", T0)
    token = core.lease("t", T0)
    assert token is not None
    assert len(core.dequeue("t", token, T0 + 5 * ZONE_LEASE)) == 1


def test_promotion_is_bounded(db: Database) -> None:
    core = Core(db, Layout("bounded"), promote_max=3)
    ids = [core.enqueue("t", T0, delay=US + n) for n in range(7)]
    now = T0 + 2 * US
    taken = core.visit("t", now, count=1)
    assert [j.record.job_id for j in taken] == ids[:1]
    s = core.store()
    assert s.pointers["t"].vesting == now  # more due work than one step moved: look again
    check_invariants(s, now)
    seen = [j.record.job_id for j in taken]
    for _ in range(10):
        seen += [j.record.job_id for j in core.visit("t", now, count=10)]
    assert seen == ids


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delays=st.lists(st.integers(min_value=0, max_value=20 * US), min_size=1, max_size=12),
    steps=st.lists(st.integers(min_value=1, max_value=4 * US), min_size=1, max_size=40),
)
def test_scheduled_jobs_start_at_the_first_visit_after_their_time(
    delays: list[int], steps: list[int]
) -> None:
    """Visiting every due zone at each step, a job is taken exactly at the first step at or
    after its due time: never before, and never later (the pointer always vests in time)."""
    db = kv.open("memory://")
    try:
        core = Core(db, Layout("timely"))
        due_of = {core.enqueue(f"t{i % 3}", T0, delay=d): T0 + d for i, d in enumerate(delays)}
        now = T0
        for step in [0, *steps, 30 * US]:
            now += step
            check_invariants(core.store(), now)
            for _vesting, tenant in core.scan(now)[0]:
                for job in core.visit(tenant, now, count=100):
                    due = due_of.pop(job.record.job_id)
                    assert due <= now, "a scheduled job ran early"
                    assert core.done(job, now)
            late = [d for d in due_of.values() if d <= now]
            assert late == [], f"due jobs not taken at {now}: {late}"
        assert due_of == {}
    finally:
        db.close()


def test_random_visits_never_take_a_job_early(core: Core) -> None:
    rng = random.Random(7)
    for i in range(60):
        core.enqueue(f"t{i % 4}", T0, delay=rng.randrange(0, 30 * US))
    due_of = {job_id: r.at for (_t, job_id), r in core.store().items.items()}
    now = T0
    while due_of:
        now += rng.randrange(0, 2 * US)
        tenant = f"t{rng.randrange(4)}"
        token = core.lease(tenant, now)
        if token is None:
            continue
        for job in core.dequeue(tenant, token, now, count=rng.randrange(0, 4)):
            assert due_of.pop(job.record.job_id) <= now
            core.done(job, now)
        check_invariants(core.store(), now)


# -- the one-step visit: the zone taken inside the dequeue transaction (zone_token=None) -------


def test_one_step_visit_takes_a_due_zone(core: Core) -> None:
    ids = [core.enqueue("t", T0 + n) for n in range(3)]
    taken = core.take("t", T0 + 5, count=2)
    assert taken is not None and [j.record.job_id for j in taken] == ids[:2]
    s = core.store()
    assert s.pointers["t"].token is None and s.pointers["t"].vesting == T0 + 5
    check_invariants(s, T0 + 5)


def test_one_step_visit_refuses_a_zone_not_due(core: Core) -> None:
    core.enqueue("t", T0, delay=10 * US)
    before = core.dump()
    with pytest.raises(ZoneNotDue):
        core.dequeue("t", None, T0 + 10 * US - 1)
    assert core.take("nobody", T0 + 10 * US) is None
    assert core.dump() == before
    token = core.lease("t", T0 + 10 * US)  # a two-step consumer holds the zone
    assert token is not None
    before = core.dump()
    assert core.take("t", T0 + 10 * US) is None
    assert core.dump() == before
    taken = core.take("t", T0 + 10 * US + ZONE_LEASE)  # its lease ran out
    assert taken is not None and len(taken) == 1


@pytest.mark.parametrize("rival", ["one-step", "lease_zone"])
@pytest.mark.parametrize("first", ["a", "b"])
def test_racing_one_step_visits_exactly_one_commits(core: Core, rival: str, first: str) -> None:
    for n in range(4):
        core.enqueue("t", T0 + n)
    take = core.dequeue_fn(count=2)
    trs = {name: core.db.create_transaction() for name in "ab"}
    assert len(take(trs["a"], "t", None, T0 + 5)) == 2
    if rival == "one-step":
        assert len(take(trs["b"], "t", None, T0 + 5)) == 2
    else:
        assert lease_zone(trs["b"], core.layout, "t", "rival", T0 + 5, ZONE_LEASE)
    trs[first].commit()
    with pytest.raises(KVError) as caught:
        trs["b" if first == "a" else "a"].commit()
    assert caught.value.code == 1020
    s = core.store()
    assert len(s.leased) == (2 if first == "a" or rival == "one-step" else 0)
    check_invariants(s, T0 + 5)
