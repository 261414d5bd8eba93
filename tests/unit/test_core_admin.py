"""core.admin: jobs by id (DESIGN.md §4, transaction 9) and the read-only counts."""

from __future__ import annotations

from quick_queue.core import admin
from quick_queue.models import JobInfo, LeasedJob, to_datetime
from quick_queue.outcomes import Outcome
from tests.support.corekit import ITEM_LEASE, MIN_INACTIVE, T0, US, Core, check_invariants


def _lookup(core: Core, tenant: str, job_id: str) -> JobInfo | None:
    return core.db.transact(admin.lookup, core.layout, tenant, job_id)


def _bury(core: Core, tenant: str, now: int = T0, reason: str = "why") -> str:
    job_id = core.enqueue(tenant, now)
    [job] = [j for j in core.visit(tenant, now, count=100) if j.record.job_id == job_id]
    assert core.settle([Outcome(tenant, job_id, job.token, "discard", reason=reason)], now)
    return job_id


def test_lookup_in_every_state(core: Core) -> None:
    ready = core.enqueue("t", T0, topic="x", payload=[1], priority=3)
    info = _lookup(core, "t", ready)
    assert info is not None
    assert (info.state, info.topic, info.payload, info.priority, info.tenant) == (
        "ready", "x", [1], 3, "t")
    assert info.due_at == to_datetime(T0) and info.enqueued_at == to_datetime(T0)
    assert info.lease_expires_at is None

    scheduled = core.enqueue("t", T0, delay=60 * US)
    info = _lookup(core, "t", scheduled)
    assert info is not None and info.state == "scheduled"
    assert info.due_at == to_datetime(T0 + 60 * US)

    [job] = core.visit("t", T0, count=1)
    assert job.record.job_id == ready
    info = _lookup(core, "t", ready)
    assert info is not None and info.state == "leased" and info.attempt == 1
    assert info.lease_expires_at == to_datetime(T0 + ITEM_LEASE) and info.due_at is None

    assert core.settle([Outcome("t", ready, job.token, "discard", reason="spam")], T0)
    info = _lookup(core, "t", ready)
    assert info is not None
    assert (info.state, info.dead_kind, info.reason, info.attempt) == (
        "dead", "discarded", "spam", 1)

    assert _lookup(core, "t", "missing") is None
    assert _lookup(core, "other", scheduled) is None  # ids are looked up in their zone


def test_cancel_removes_a_live_job(core: Core) -> None:
    ready = core.enqueue("t", T0, topic="x")
    scheduled = core.enqueue("t", T0, delay=5 * US)
    assert core.cancel("t", ready) and core.cancel("t", scheduled)
    s = core.store()
    assert s.items == {} and s.ready == [] and s.scheduled == []
    assert s.stats[("x", "cancelled")] == 1
    assert not core.cancel("t", ready)
    assert not core.cancel("t", "missing")
    check_invariants(s, T0)
    # the pointer of the emptied zone goes away in its own time
    assert core.visit("t", T0 + MIN_INACTIVE) == []
    assert core.store().pointers == {}


def test_cancel_of_a_running_job_fences_its_worker(core: Core) -> None:
    job_id = core.enqueue("t", T0)
    [job] = core.visit("t", T0)
    assert core.cancel("t", job_id)
    s = core.store()
    assert s.items == {} and s.leased == []
    assert core.settle([Outcome("t", job_id, job.token, "done", lease_at=job.record.at)],
                       T0) == [False]
    assert core.extend([("t", job_id, job.token)], T0) == [False]


def test_cancel_does_not_touch_dead_letters(core: Core) -> None:
    job_id = _bury(core, "t")
    assert not core.cancel("t", job_id)
    assert ("t", job_id) in core.store().dead


def test_retry_dead_gives_a_fresh_ready_job(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=0, priority=4, payload={"a": 1})
    [job] = core.visit("t", T0)
    core.settle([Outcome("t", job_id, job.token, "retry", at=T0 + US, reason="boom")], T0)
    dead = core.store().dead[("t", job_id)]
    assert dead.kind == "failed"
    later = T0 + ITEM_LEASE + MIN_INACTIVE  # by now the zone's pointer was collected
    core.visit("t", T0 + ITEM_LEASE)
    assert core.store().pointers == {}
    assert core.retry_dead("t", job_id, later)
    s = core.store()
    assert s.dead == {}
    r = s.items[("t", job_id)]
    assert (r.state, r.at, r.seq, r.attempt, r.snoozes, r.token) == ("r", later, later, 0, 0, None)
    assert (r.priority, r.payload, r.max_retries, r.enqueued) == (4, {"a": 1}, 0, T0)
    assert r.error == dead.reason
    assert s.pointers["t"].vesting == later  # a pointer again
    check_invariants(s, later)
    [again] = core.visit("t", later)
    assert again.record.job_id == job_id and again.record.attempt == 1
    assert not core.retry_dead("t", job_id, later)  # no longer dead


def test_retry_dead_pulls_a_parked_pointer(core: Core) -> None:
    core.enqueue("t", T0, delay=600 * US)
    job_id = _bury(core, "t")
    assert core.visit("t", T0 + ITEM_LEASE) == []
    assert core.store().pointers["t"].vesting == T0 + 600 * US  # parked for the scheduled job
    now = T0 + ITEM_LEASE + US
    assert core.retry_dead("t", job_id, now)
    s = core.store()
    assert s.pointers["t"].vesting == now
    check_invariants(s, now)
    assert not core.retry_dead("t", "missing", now)


def test_dead_pages_and_purge(core: Core) -> None:
    buried = {t: [_bury(core, t, T0 + n) for n in range(3)] for t in ("a", "a\x00b", "b")}
    rows = core.db.transact(admin.dead_page, core.layout, None, None, 100)
    assert [(i.tenant, i.job_id) for _, i in rows] == [
        (t, j) for t in ("a", "a\x00b", "b") for j in buried[t]]
    assert all(i.state == "dead" and i.reason == "why" for _, i in rows)
    # one tenant only, and paging with `after`
    rows = core.db.transact(admin.dead_page, core.layout, "a", None, 2)
    assert [i.job_id for _, i in rows] == buried["a"][:2]
    rest = core.db.transact(admin.dead_page, core.layout, "a", rows[-1][0], 10)
    assert [i.job_id for _, i in rest] == buried["a"][2:]
    # purge one tenant (not the tenant whose name extends it), then everything
    assert core.db.transact(admin.purge_dead_page, core.layout, "a", 2) == 2
    assert core.db.transact(admin.purge_dead_page, core.layout, "a", 10) == 1
    assert core.db.transact(admin.purge_dead_page, core.layout, "a", 10) == 0
    assert {t for t, _ in core.store().dead} == {"a\x00b", "b"}
    assert core.db.transact(admin.purge_dead_page, core.layout, None, 100) == 6
    assert core.store().dead == {}


def test_zone_stats_and_pointer_tenants(core: Core) -> None:
    core.enqueue("a", T0)
    core.enqueue("a", T0, delay=US)
    core.enqueue("b", T0)
    leased: list[LeasedJob] = core.visit("b", T0)
    assert len(leased) == 1
    stats = core.db.transact(admin.zone_stats, core.layout, "a", T0, 100)
    assert (stats.ready, stats.scheduled, stats.leased) == (1, 1, 0)
    assert stats.next_due == to_datetime(T0) and not stats.pointer_leased
    stats = core.db.transact(admin.zone_stats, core.layout, "b", T0, 100)
    assert (stats.ready, stats.scheduled, stats.leased) == (0, 0, 1)
    tenants = core.db.transact(admin.pointer_tenants, core.layout, None, 100)
    assert [t for _, t in tenants] == ["a", "b"]
    counters = core.db.transact(admin.topic_counters, core.layout)
    assert counters["topic"]["enqueued"] == 3
