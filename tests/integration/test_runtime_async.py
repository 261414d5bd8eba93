"""Async handlers (issue 12): ``async def perform`` runs on one event loop per consumer, beside
plain handlers in threads; leases, timeouts, cancellation, shutdown and the concurrency bound
hold for both alike."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import quick_queue as qq
from tests.conftest import QueueFactory

HANG = 60.0  # an async handler that never returns by itself (cancelled long before)


class Gauge:
    """How many handlers run at once, at most (sync and async alike)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def _state(queue: qq.JobQueue, tenant: str, job_id: str) -> tuple[str, int] | None:
    info = queue.get_job(tenant, job_id)
    return None if info is None else (info.state, info.attempt)


def test_a_worker_runs_async_and_sync_handlers_at_once(make_queue: QueueFactory) -> None:
    threads: dict[str, set[str]] = {"async": set(), "sync": set()}
    together = [0]  # async handlers waiting for each other: they must overlap on one loop

    @qq.job(topic="async")
    class AsyncWork:
        async def perform(self, payload: int, meta: qq.JobMeta) -> int:
            threads["async"].add(threading.current_thread().name)
            together[0] += 1
            if payload < 3:  # the first three meet: only tasks running at once can
                end = time.monotonic() + 5
                while together[0] < 3 and time.monotonic() < end:
                    await asyncio.sleep(0.005)
            return payload * 2

    @qq.job(topic="sync")
    class SyncWork:
        def perform(self, payload: int, meta: qq.JobMeta) -> None:
            threads["sync"].add(threading.current_thread().name)
            time.sleep(0.005)

    queue = make_queue(AsyncWork, SyncWork)
    for n in range(10):
        queue.enqueue("t", "async", n, priority=n)
        queue.enqueue("u", "sync", n)
    summary = queue.drain(concurrency=4, timeout=20)
    assert summary.completed == 20 and summary.retried == 0 and summary.dead == 0
    assert threads["async"] == {"quick_queue-async"}  # one loop thread for every task
    assert threads["sync"] and "quick_queue-async" not in threads["sync"]
    assert together[0] == 10
    assert queue.stats().topics["async"]["completed"] == 10


def test_the_concurrency_bound_holds_for_async_tasks(make_queue: QueueFactory) -> None:
    gauge = Gauge()

    @qq.job(topic="async")
    class AsyncWork:
        async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            gauge.enter()
            await asyncio.sleep(0.02)
            gauge.leave()

    @qq.job(topic="sync")
    class SyncWork:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            gauge.enter()
            time.sleep(0.02)
            gauge.leave()

    queue = make_queue(AsyncWork, SyncWork)
    for n in range(24):
        queue.enqueue(f"t{n % 6}", "async", n)
    for n in range(6):
        queue.enqueue(f"u{n}", "sync", n)
    summary = queue.drain(concurrency=3, timeout=20)
    assert summary.completed == 30
    # 3 running at most, async tasks and threads together (the leases allow 6: prefetch)
    assert 2 <= gauge.most <= 3


def test_an_async_handler_past_its_timeout_is_cancelled_and_fails_the_attempt(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    seen: list[str] = []

    @qq.job(topic="slow", timeout=1, max_retries=1, backoff_base=0.001, backoff_cap=0.001)
    class Slow:
        async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            seen.append(f"start {meta.attempt}")
            if meta.attempt == 1:
                try:
                    await asyncio.sleep(HANG)
                except asyncio.CancelledError:
                    seen.append("cancelled 1")
                    raise
            seen.append(f"end {meta.attempt}")

    queue = make_queue(Slow)
    job_id = queue.enqueue("t", "slow", {})
    run = background(queue.run, concurrency=1, log=False)
    wait_until(lambda: seen == ["start 1"], what="the first attempt")
    clock.advance(1.5)  # past the timeout
    wait_until(lambda: "cancelled 1" in seen, what="the task to be cancelled")
    wait_until(lambda: _state(queue, "t", job_id) == ("scheduled", 1), what="the failed attempt")
    info = queue.get_job("t", job_id)
    assert info is not None and "timed out after 1 s" in (info.last_error or "")
    clock.advance(1)  # the retry is due; it needs the one slot the cancelled task held
    wait_until(lambda: queue.get_job("t", job_id) is None, what="the retry to complete")
    queue.stop()
    summary = run.result()
    assert seen == ["start 1", "cancelled 1", "start 2", "end 2"]
    assert summary.retried == 1 and summary.completed == 1 and summary.stale == 0


def test_a_cancelled_job_cancels_its_async_task(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    seen: list[str] = []

    @qq.job(topic="long")
    class Long:
        async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            seen.append("start")
            try:
                await asyncio.sleep(HANG)
            except asyncio.CancelledError:
                seen.append(f"cancelled, lease lost: {meta.lease_lost.is_set()}")
                raise

    queue = make_queue(Long, extend_every=1)
    job_id = queue.enqueue("t", "long", {})
    run = background(queue.run, concurrency=1, log=False)
    wait_until(lambda: seen == ["start"], what="the handler")
    assert queue.cancel("t", job_id)
    clock.advance(1.5)  # the next extension round learns of the cancel
    wait_until(lambda: len(seen) == 2, what="the task to be cancelled")
    assert seen[1] == "cancelled, lease lost: True"
    queue.stop()
    summary = run.result()
    # the cancelled run's outcome was refused (its lease is gone), and the job stays gone
    assert summary.completed == 0 and summary.retried == 0 and summary.stale == 1
    assert queue.get_job("t", job_id) is None


def test_shutdown_gives_async_tasks_the_grace_then_cancels_and_releases_them(
    make_queue: QueueFactory, background: Any, wait_until: Any
) -> None:
    seen: list[str] = []

    @qq.job(topic="work")
    class Work:
        async def perform(self, payload: str, meta: qq.JobMeta) -> None:
            seen.append(f"start {payload}")
            try:
                await asyncio.sleep(HANG if payload == "hang" else 0.1)
            except asyncio.CancelledError:
                seen.append(f"cancelled {payload}")
                raise
            seen.append(f"end {payload}")

    queue = make_queue(Work, shutdown_grace=0.5)
    hang = queue.enqueue("t", "work", "hang")
    quick = queue.enqueue("u", "work", "quick")
    run = background(queue.run, concurrency=2, log=False)
    wait_until(lambda: {"start hang", "start quick"} <= set(seen), what="both handlers")
    queue.stop()
    summary = run.result()
    assert "end quick" in seen and "cancelled hang" in seen  # (the quick one had the grace)
    assert summary.completed == 1 and summary.released == 1
    assert queue.get_job("u", quick) is None
    assert _state(queue, "t", hang) == ("ready", 0)  # handed back, no attempt spent


def test_transactional_async_handlers_are_refused_at_registration() -> None:
    with pytest.raises(qq.HandlerError, match=r"transactional=True needs a plain `def perform`"):

        @qq.job(topic="tx", transactional=True)
        class AsyncTx:
            async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
                pass
