"""Live workers: a running consumer registers itself in the store, holds jobs there, and
disappears when it stops or its heartbeat lapses."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.heartbeat import Heartbeat
from quick_queue.consumer.inflight import InFlight
from quick_queue.context import QueueContext
from quick_queue.core.workers import WorkerInfo, beat, worker_key
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.live_workers import workers
from quick_queue.telemetry import Counters
from tests.conftest import QueueFactory


def test_a_running_worker_is_listed_with_the_jobs_it_holds_and_leaves_when_it_stops(
    make_queue: QueueFactory, background: Any, wait_until: Any
) -> None:
    release = threading.Event()

    @qq.job(topic="w:hold")
    class Hold:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            release.wait(10)

    queue = make_queue(Hold)
    job_id = queue.enqueue("acme", "w:hold", {})
    assert workers(queue) == []
    run = background(queue.run, concurrency=3, log=False)
    listed = wait_until(lambda: workers(queue), what="the worker's record")
    assert len(listed) == 1
    worker = listed[0]
    assert worker.pid == os.getpid() and worker.concurrency == 3
    consumer = queue._consumer
    assert consumer is not None and consumer.heartbeat is not None
    wait_until(lambda: consumer.inflight.entries, what="the job to be leased")
    consumer.heartbeat.beat()
    assert workers(queue)[0].jobs == [("acme", job_id)]
    release.set()
    queue.stop()
    run.result()
    assert workers(queue) == []


def test_a_record_whose_heartbeat_lapsed_is_not_listed_and_is_cleared(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    queue = qq.JobQueue(db, clock=clock)
    now = clock.now()
    dead = WorkerInfo("gone", "h", 1, now, now, now + 15, 4)
    db.transact(beat, "default", dead, now)
    assert [w.worker_id for w in workers(queue)] == ["gone"]
    clock.advance(16)
    assert workers(queue) == []
    later = clock.now()
    alive = WorkerInfo("alive", "h", 2, later, later, later + 15, 4)
    assert db.transact(beat, "default", alive, later) == 1  # the lapsed record is cleared
    assert db.transact(lambda tr: tr.get(worker_key("default", "gone"))) is None
    assert [w.worker_id for w in workers(queue)] == ["alive"]


def test_an_unreadable_record_is_skipped(db: qq.Database, clock: qq.ManualClock) -> None:
    queue = qq.JobQueue(db, clock=clock)
    db.transact(lambda tr: tr.set(worker_key("default", "junk"), b"\xff not json"))
    assert workers(queue) == []


@dataclass(eq=False)
class _Consumer:
    """What a heartbeat reads of a consumer."""

    context: QueueContext
    inflight: InFlight
    counters: Counters


def test_a_failing_heartbeat_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    db = qq.open(url)
    queue = qq.JobQueue(db)
    queue.enqueue("a", "x", {})  # the file exists and is a queue
    read_only = qq.open(url, read_only=True)
    timing_out = FaultyDatabase(db, timed_out=1.0)  # every commit: 1031, a passing fault
    try:
        def heartbeat(on: qq.Database) -> Heartbeat:
            return Heartbeat(_Consumer(queue.context.with_db(on), InFlight(2), Counters()))

        with caplog.at_level(logging.DEBUG, logger="quick_queue.worker"):
            broken = heartbeat(read_only)
            broken.beat()
            broken.beat()
            broken.stop()
            passing = heartbeat(timing_out)
            passing.beat()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "heartbeat failed" in warnings[0].getMessage()
        assert any(r.levelno == logging.DEBUG and "heartbeat failed" in r.getMessage()
                   for r in caplog.records)  # the passing fault: noted, not warned
        assert workers(queue) == []
    finally:
        read_only.close()
        db.close()
