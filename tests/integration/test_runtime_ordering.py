"""Order inside a zone (priority, then enqueue order) and scheduled jobs never starting early."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import quick_queue as qq

QueueFactory = Callable[..., qq.JobQueue]


def _recorder() -> tuple[type, list[tuple[str, Any]]]:
    ran: list[tuple[str, Any]] = []

    @qq.job(topic="rec")
    class Rec:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            ran.append((meta.tenant, payload))

    return Rec, ran


def test_one_zone_runs_by_priority_then_enqueue_order(make_queue: QueueFactory) -> None:
    handler, ran = _recorder()
    queue = make_queue(handler, dequeue_max=3)  # several zone visits
    rng = random.Random(7)
    expected = []
    for n in range(40):
        priority = rng.choice([0, 5, 100, 1000])
        queue.enqueue("t", "rec", n, priority=priority)
        expected.append((priority, n))
    summary = queue.drain(concurrency=1)
    assert summary.completed == 40
    assert [payload for _, payload in ran] == [n for _, n in sorted(expected)]


def test_default_priority_comes_from_the_handler_then_the_settings(
    make_queue: QueueFactory,
) -> None:
    ran: list[str] = []

    @qq.job(topic="urgent", priority=1)
    class Urgent:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            ran.append(f"urgent{payload}")
            assert meta.priority == 1

    @qq.job(topic="plain")
    class Plain:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            ran.append(f"plain{payload}")
            assert meta.priority == 50

    queue = make_queue(Urgent, Plain, default_priority=50)
    queue.enqueue("t", "plain", 1)
    queue.enqueue("t", "plain", 2, priority=0)
    queue.enqueue("t", "urgent", 3)
    queue.drain(concurrency=1)
    assert ran == ["plain2", "urgent3", "plain1"]


def test_scheduled_job_never_starts_early(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    handler, ran = _recorder()
    queue = make_queue(handler)
    in_seconds = queue.enqueue("t", "rec", "in", in_=60)
    in_delta = queue.enqueue("t", "rec", "delta", in_=timedelta(minutes=2))
    at_time = queue.enqueue(
        "t", "rec", "at", at=datetime.fromtimestamp(clock.now() + 180, tz=UTC)
    )
    now_job = queue.enqueue("t", "rec", "now")

    assert queue.drain().completed == 1
    assert ran == [("t", "now")]
    for job_id, due in ((in_seconds, 60), (in_delta, 120), (at_time, 180)):
        info = queue.get_job("t", job_id)
        assert info is not None and info.state == "scheduled"
        assert info.due_at is not None and info.due_at.timestamp() == clock.now() + due
    assert queue.get_job("t", now_job) is None

    start = clock.now()
    for due, label in ((60, "in"), (120, "delta"), (180, "at")):
        clock.set(start + due - 0.001)
        assert queue.drain().completed == 0, f"{label} started early"
        clock.set(start + due)
        assert queue.drain().completed == 1
        assert ran[-1] == ("t", label)
    assert queue.stats().scheduled == 0


def test_scheduled_jobs_run_in_due_order_and_before_later_ready_work_of_lower_priority(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    handler, ran = _recorder()
    queue = make_queue(handler)
    queue.enqueue("t", "rec", "late", in_=20, priority=10)
    queue.enqueue("t", "rec", "early", in_=10, priority=10)
    clock.advance(30)
    queue.enqueue("t", "rec", "fresh", priority=10)
    queue.enqueue("t", "rec", "urgent-fresh", priority=0)
    queue.drain(concurrency=1)
    # both scheduled jobs became due before "fresh" was enqueued, so they are ahead of it
    assert [p for _, p in ran] == ["urgent-fresh", "early", "late", "fresh"]


def test_a_scheduled_job_does_not_hold_up_ready_work_of_its_zone(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    handler, ran = _recorder()
    queue = make_queue(handler)
    queue.enqueue("t", "rec", "later", in_=3600, priority=0)
    queue.enqueue("t", "rec", "now", priority=1000)
    assert queue.drain().completed == 1
    assert ran == [("t", "now")]


def test_zones_are_served_independently(make_queue: QueueFactory) -> None:
    handler, ran = _recorder()
    queue = make_queue(handler, dequeue_max=2)
    for tenant in ("a", "b", "c"):
        for n in range(5):
            queue.enqueue(tenant, "rec", n, priority=10 - n)  # reverse priority per zone
    assert queue.drain(concurrency=1).completed == 15
    for tenant in ("a", "b", "c"):
        assert [p for t, p in ran if t == tenant] == [4, 3, 2, 1, 0]
