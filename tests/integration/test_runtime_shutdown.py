"""Graceful shutdown: no new leases; in-flight jobs get ``shutdown_grace``; jobs not finished
by then, and prefetched jobs that never started, have their leases released so another
consumer picks them up at once, with no attempt spent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import quick_queue as qq

QueueFactory = Callable[..., qq.JobQueue]


def _state(queue: qq.JobQueue, tenant: str, job_id: str) -> tuple[str, int] | None:
    info = queue.get_job(tenant, job_id)
    return None if info is None else (info.state, info.attempt)


def test_unfinished_and_prefetched_jobs_are_released_on_stop(
    make_queue: QueueFactory, background: Any, wait_until: Any
) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[tuple[int, int]] = []
    first_call = threading.Lock()

    @qq.job(topic="work")
    class Work:
        def perform(self, payload: int, meta: qq.JobMeta) -> None:
            runs.append((payload, meta.attempt))
            if first_call.acquire(blocking=False):  # only the very first run hangs
                started.set()
                release.wait(10)

    queue = make_queue(Work, shutdown_grace=0.2)
    stuck = queue.enqueue("t", "work", 1, priority=0)
    waiting = queue.enqueue("t", "work", 2, priority=1)
    run = background(queue.run, concurrency=1)  # capacity 2: one running, one prefetched
    assert started.wait(5)
    wait_until(lambda: _state(queue, "t", waiting) == ("leased", 1), what="the prefetch")
    queue.stop()
    summary = run.result(5)
    assert summary.released == 2 and summary.completed == 0 and summary.failed == 0
    # both are ready at once, with no attempt spent
    assert _state(queue, "t", stuck) == ("ready", 0)
    assert _state(queue, "t", waiting) == ("ready", 0)
    assert queue.stats().leased == 0

    # Another consumer takes them without waiting for any lease to expire (same clock).
    other = make_queue(Work)
    assert other.drain().completed == 2
    assert sorted(runs) == [(1, 1), (1, 1), (2, 1)]
    release.set()  # the abandoned first run returns late: ignored
    assert queue.get_job("t", stuck) is None
    assert queue.stats().topics["work"]["completed"] == 2


def test_running_jobs_finish_within_the_grace_and_no_new_job_is_leased(
    make_queue: QueueFactory, background: Any, wait_until: Any
) -> None:
    started, release = threading.Event(), threading.Event()

    @qq.job(topic="work")
    class Work:
        def perform(self, payload: str, meta: qq.JobMeta) -> None:
            if payload == "slow":
                started.set()
                release.wait(10)

    queue = make_queue(Work, shutdown_grace=10)
    slow = queue.enqueue("t", "work", "slow")
    run = background(queue.run, concurrency=1)
    assert started.wait(5)
    queue.stop()
    late = queue.enqueue("t2", "work", "late")  # enqueued while shutting down
    assert not run.done()  # waiting for the running job (grace 10 s)
    release.set()
    summary = run.result(5)
    assert summary.completed == 1 and summary.released == 0
    assert queue.get_job("t", slow) is None
    assert _state(queue, "t2", late) == ("ready", 0)  # never leased by the stopping consumer


def test_stop_before_run_and_after_run_is_harmless(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.stop()  # nothing running: no effect
    assert queue.drain().completed == 0
