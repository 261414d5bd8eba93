"""Leases in the running consumer: a stalled worker loses its job to another, its completion
is rejected and counted as stale, its handler is told through ``meta.lease_lost``; a live
worker's keeper extends its leases so nobody else takes a long job."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq

QueueFactory = Callable[..., qq.JobQueue]


def _leased_info(queue: qq.JobQueue, tenant: str, job_id: str) -> qq.JobInfo:
    info = queue.get_job(tenant, job_id)
    assert info is not None and info.state == "leased", info
    return info


@pytest.fixture
def two_clocks(tmp_path: Path) -> Iterator[tuple[qq.Database, qq.Database, qq.ManualClock,
                                                 qq.ManualClock]]:
    """Two connections to one store, each reading the store's time from its own clock: A's
    time stands still (its process stalls: no lease extension), B's moves past A's lease.
    (Leases follow the store's time, which every real connection shares.)"""
    clock_a, clock_b = qq.ManualClock(), qq.ManualClock()
    url = f"sqlite:///{tmp_path}/q.db"
    db_a, db_b = qq.open(url, clock=clock_a), qq.open(url, clock=clock_b)
    try:
        yield db_a, db_b, clock_a, clock_b
    finally:
        db_a.close()
        db_b.close()


def test_stalled_worker_loses_the_job_and_its_completion_is_stale(
    two_clocks: Any, background: Any
) -> None:
    db_a, db_b, clock_a, clock_b = two_clocks
    started = threading.Event()
    runs: list[tuple[str, int]] = []
    lost_seen: list[bool] = []

    @qq.job(topic="stall")
    class Stall:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append((threading.current_thread().name, meta.attempt))
            if meta.attempt == 1:
                started.set()
                lost_seen.append(meta.lease_lost.wait(10))

    queue_a = qq.JobQueue(db_a, jobs=[Stall], clock=clock_a)
    queue_b = qq.JobQueue(db_b, jobs=[Stall], clock=clock_b)
    job_id = queue_a.enqueue("t", "stall", {})
    drain_a = background(queue_a.drain)
    assert started.wait(5)
    lease = _leased_info(queue_a, "t", job_id).lease_expires_at
    assert lease is not None and lease.timestamp() == clock_a.now() + 30

    clock_b.advance(29.9)
    assert queue_b.drain().completed == 0  # the lease still holds
    clock_b.advance(0.2)
    summary_b = queue_b.drain()
    assert summary_b.completed == 1 and summary_b.stale == 0
    assert [attempt for _, attempt in runs] == [1, 2]
    assert queue_b.get_job("t", job_id) is None

    # A wakes up: its keeper's next extension finds the lease gone and tells the handler.
    assert not drain_a.done()
    clock_a.advance(11)
    summary_a = drain_a.result()
    assert lost_seen == [True]
    assert summary_a.completed == 0 and summary_a.stale == 1
    assert summary_a.extra.get("leases_lost") == 1
    topics = queue_a.stats().topics
    assert topics["stall"]["completed"] == 1  # once, by B
    assert topics["stall"]["lease_expired"] == 1
    assert topics["*"]["stale"] == 1  # A's rejected completion, counted in the store too
    assert queue_a.get_job("t", job_id) is None


def test_stale_failure_of_a_stalled_worker_changes_nothing(
    two_clocks: Any, background: Any
) -> None:
    db_a, db_b, clock_a, clock_b = two_clocks
    started, b_running, b_release = threading.Event(), threading.Event(), threading.Event()

    @qq.job(topic="fail-late")
    class FailLate:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard | None:
            if meta.attempt == 1:
                started.set()
                meta.lease_lost.wait(10)
                return qq.Discard("too late to matter")
            b_running.set()
            b_release.wait(10)
            return None

    queue_a = qq.JobQueue(db_a, jobs=[FailLate], clock=clock_a)
    queue_b = qq.JobQueue(db_b, jobs=[FailLate], clock=clock_b)
    job_id = queue_a.enqueue("t", "fail-late", {})
    drain_a = background(queue_a.drain)
    assert started.wait(5)
    clock_b.advance(31)
    drain_b = background(queue_b.drain)
    assert b_running.wait(5)
    info_b = _leased_info(queue_b, "t", job_id)
    assert info_b.attempt == 2

    clock_a.advance(11)  # A learns its lease is lost, its handler discards: stale
    summary_a = drain_a.result()
    assert summary_a.stale == 1 and summary_a.discarded == 0
    info = _leased_info(queue_b, "t", job_id)  # B's lease is untouched
    assert (info.attempt, info.lease_expires_at) == (2, info_b.lease_expires_at)
    assert queue_b.dead_letters() == []
    b_release.set()
    assert drain_b.result().completed == 1
    assert queue_b.get_job("t", job_id) is None


def test_keeper_extends_a_long_jobs_lease_so_nobody_else_takes_it(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    started, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    @qq.job(topic="long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            attempts.append(meta.attempt)
            started.set()
            release.wait(10)
            assert not meta.lease_lost.is_set()

    worker = make_queue(Long)
    other = make_queue(Long)  # a second consumer on the same clock
    job_id = worker.enqueue("t", "long", {})
    drain = background(worker.drain)
    assert started.wait(5)
    for _ in range(2):  # 40 s in all, past the 30 s lease
        before = _leased_info(worker, "t", job_id).lease_expires_at
        assert before is not None
        clock.advance(20)
        extended = wait_until(
            lambda b=before: (i := _leased_info(worker, "t", job_id)).lease_expires_at > b and i,
            what="the keeper to extend the lease",
        )
        assert extended.lease_expires_at.timestamp() == clock.now() + 30
        assert other.drain().completed == 0
    release.set()
    summary = drain.result()
    assert summary.completed == 1 and summary.stale == 0
    assert attempts == [1]


def test_cancelling_a_running_job_tells_the_handler_and_its_completion_is_stale(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any
) -> None:
    started = threading.Event()
    lost_seen: list[bool] = []

    @qq.job(topic="cancel-me")
    class CancelMe:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.set()
            lost_seen.append(meta.lease_lost.wait(10))

    queue = make_queue(CancelMe)
    job_id = queue.enqueue("t", "cancel-me", {})
    drain = background(queue.drain)
    assert started.wait(5)
    assert queue.cancel("t", job_id)
    assert not queue.cancel("t", job_id)
    clock.advance(10)  # the keeper's next extension
    summary = drain.result()
    assert lost_seen == [True]
    assert summary.stale == 1 and summary.completed == 0
    assert queue.get_job("t", job_id) is None
    counters = queue.stats().topics["cancel-me"]
    assert counters["cancelled"] == 1 and counters.get("completed", 0) == 0


@pytest.fixture
def real_db() -> Iterator[qq.Database]:
    """A store on its own time (no test clock)."""
    database = qq.open("memory://")
    try:
        yield database
    finally:
        database.close()


def test_short_item_lease_is_extended_in_time(real_db: qq.Database, background: Any) -> None:
    # Real time: with item_lease=0.15 s the keeper must extend every 0.05 s, faster than its
    # idle tick, or a second consumer takes the job while it still runs.
    db = real_db
    runs: list[int] = []
    started = threading.Event()

    @qq.job(topic="long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append(meta.attempt)
            started.set()
            time.sleep(0.45)  # three leases long

    first = qq.JobQueue(db, jobs=[Long], item_lease=0.15)
    second = qq.JobQueue(db, jobs=[Long], item_lease=0.15)
    job_id = first.enqueue("t", "long", {})
    drain = background(first.drain)
    assert started.wait(5)
    deadline = time.monotonic() + 0.4
    while time.monotonic() < deadline:  # the second consumer keeps looking meanwhile
        assert second.drain(timeout=5).completed == 0
        time.sleep(0.02)
    summary = drain.result()
    assert runs == [1]
    assert summary.completed == 1 and summary.stale == 0
    assert first.get_job("t", job_id) is None
