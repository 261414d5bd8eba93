"""``@job(timeout=...)`` (issue 8 item 4): a handler past its timeout still counts against the
concurrency, never runs beside its own retry in the same worker, and cannot make the consumer
start threads without bound."""

from __future__ import annotations

import threading
from typing import Any

import quick_queue as qq
from quick_queue.events import EventKind, JobEvent
from tests.conftest import QueueFactory

RELEASE_WAIT = 20.0  # a stuck handler's bound, far past what any test waits


def _worker_threads() -> int:
    return sum(t.name == "quick_queue-worker" and t.is_alive() for t in threading.enumerate())


def _events(queue: qq.JobQueue) -> list[JobEvent]:
    seen: list[JobEvent] = []
    queue.events.subscribe(seen.append)
    return seen


def test_a_retry_never_overlaps_its_previous_attempt_in_the_same_worker(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    release = threading.Event()
    order: list[str] = []
    second_started = threading.Event()

    @qq.job(topic="slow", timeout=1, max_retries=2, backoff_base=0.001, backoff_cap=0.001)
    class Slow:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            order.append(f"start {meta.attempt}")
            if meta.attempt == 2:
                second_started.set()
            if meta.attempt == 1:
                release.wait(RELEASE_WAIT)  # ignores lease_lost: a stuck handler
            order.append(f"end {meta.attempt}")

    queue = make_queue(Slow)
    job_id = queue.enqueue("t", "slow", {})
    run = background(queue.run, concurrency=2, log=False)
    wait_until(lambda: order == ["start 1"], what="the first attempt")
    clock.advance(1.5)  # past the timeout: the attempt fails, the retry is scheduled
    wait_until(lambda: (i := queue.get_job("t", job_id)) is not None and i.state == "scheduled",
               what="the timeout")
    clock.advance(1)  # the retry is due
    wait_until(lambda: (i := queue.get_job("t", job_id)) is not None and i.attempt == 2
               and i.state == "leased", what="the retry to be leased here")
    # A free worker is there (concurrency 2), but the retry waits for attempt 1 to end.
    assert not second_started.wait(0.3)
    release.set()
    wait_until(lambda: queue.get_job("t", job_id) is None, what="the retry to complete")
    queue.stop()
    summary = run.result()
    assert order == ["start 1", "end 1", "start 2", "end 2"]
    assert summary.completed == 1 and summary.retried == 1


def test_handlers_past_their_timeout_keep_their_slots_and_threads_stay_bounded(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    release = threading.Event()
    lock = threading.Lock()
    running = [0]
    most = [0]

    @qq.job(topic="hang", timeout=1, max_retries=0)
    class Hang:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            release.wait(RELEASE_WAIT)
            with lock:
                running[0] -= 1

    queue = make_queue(Hang)
    seen = _events(queue)
    jobs = [queue.enqueue(f"t{n}", "hang", {}) for n in range(6)]
    drain = background(queue.drain, concurrency=2)
    wait_until(lambda: running[0] == 2, what="two handlers")
    for _ in range(3):  # time passes: each running handler times out, again and again
        clock.advance(2)
        wait_until(lambda: sum(e.kind is EventKind.DEAD for e in seen) >= 2,
                   what="the timeouts")
    assert not release.wait(0.3)  # give a replacement worker time to start, if any did
    assert most[0] == 2 and running[0] == 2  # concurrency 2 counts the stuck handlers
    assert _worker_threads() <= 2
    # The jobs prefetched for the stuck workers were handed back, not held.
    waiting = [queue.get_job(f"t{n}", j) for n, j in enumerate(jobs)]
    assert all(info is None or info.state != "leased" for info in waiting)
    release.set()
    summary = drain.result()
    assert summary.dead == 2 and summary.completed == 4
    assert most[0] == 2
