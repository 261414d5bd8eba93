"""The runtime rides out what it cannot fix (issue 8 items 9 and 10): one bad zone never stops
a worker, one bad outcome never loses a batch's other completions, and a full disk pauses a
worker instead of ending it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.scanner import VISIT_RETRIES
from quick_queue.kv.api import Transaction
from quick_queue.kv.faults import FaultyDatabase
from tests.conftest import QueueFactory

GARBAGE = b"\xff\xfe{ not json, not utf-8"


@qq.job(topic="rb:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def _corrupt(queue: qq.JobQueue, tenant: str, job_id: str) -> None:
    key = queue.layout.zone(tenant).item(job_id)

    def write(tr: Transaction) -> None:
        tr.set(key, GARBAGE)

    queue.db.transact(write)


def test_a_zone_that_cannot_be_visited_does_not_stop_the_worker(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Ok)
    bad = queue.enqueue("bad", "rb:ok", {})
    _corrupt(queue, "bad", bad)
    good = [queue.enqueue(f"good-{n}", "rb:ok", {}) for n in range(5)]
    summary = queue.drain(concurrency=2, timeout=10)  # before: raised from the bad zone
    assert summary.completed >= 5
    assert all(queue.get_job(f"good-{n}", j) is None for n, j in enumerate(good))


def test_one_outcome_that_cannot_be_settled_does_not_lose_the_batch(
    make_queue: QueueFactory,
) -> None:
    together = threading.Barrier(4, timeout=10)  # four outcomes reach the settler at once

    @qq.job(topic="rb:batch")
    class Batch:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            together.wait()
            if payload["poison"]:
                _corrupt(queue, meta.tenant, meta.job_id)
                raise RuntimeError("retry me")  # settling a retry reads the record

    queue = make_queue(Batch)
    ids = {queue.enqueue(f"t{n}", "rb:batch", {"poison": n == 0}): f"t{n}" for n in range(4)}
    summary = queue.drain(concurrency=4, timeout=10)
    innocent = [j for j, t in ids.items() if t != "t0"]
    assert summary.completed == 3  # before: 0, the whole batch was refused as stale
    assert all(queue.get_job(ids[j], j) is None for j in innocent)


def test_a_full_disk_pauses_the_worker_until_space_returns(
    tmp_path: Path, clock: qq.ManualClock, background: Any, wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = qq.open(f"sqlite:///{tmp_path}/full.db", clock=clock)  # leases on the store's time
    try:
        queue = qq.JobQueue(db, jobs=[Ok], clock=clock)
        writer = db._writer  # type: ignore[attr-defined]  # the engine's one writing connection
        jobs = [queue.enqueue(f"t{n}", "rb:ok", {"n": n}) for n in range(20)]
        # A real SQLITE_FULL: the file may not grow past its current size.
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count={pages}")
        for size in (2_000, 200, 20):  # pack its free space, so any new key needs a page
            with pytest.raises(qq.KVError, match="disk is full"):
                for _ in range(100_000):
                    queue.enqueue("filler", "rb:ok", {"pad": "f" * size}, in_=10**6)
        with caplog.at_level("WARNING", logger="quick_queue.worker"):
            run = background(queue.run, concurrency=2, log=False)
            wait_until(lambda: run.done() or any("disk is full" in r.getMessage()
                                                 for r in caplog.records),
                       what="the first failure")
            assert not run.done()  # before: run() raised StorageError and the worker exited
            writer.execute("PRAGMA max_page_count=1073741823")  # space returns
            wait_until(lambda: all(queue.get_job(f"t{n}", j) is None
                                   for n, j in enumerate(jobs)), what="every job")
            queue.stop()
            summary = run.result()
        assert summary.completed == 20 and summary.stale == 0
        failures = [r for r in caplog.records if "the store failed" in r.getMessage()]
        assert 1 <= len(failures) <= 3  # once per loop that met it, not once per try
    finally:
        db.close()


def _leasing_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "the store failed while leasing jobs" in r.getMessage()]


def test_a_retryable_read_error_in_a_visit_is_passed_over_like_a_lost_race(
    db: qq.Database, clock: qq.ManualClock, caplog: pytest.LogCaptureFixture,
) -> None:
    # FoundationDB's reads fail now and then (1009 future_version, 1007 too old); a visit
    # that meets one is lost, the next scan draws again. Before: the first one paused the
    # whole scanner with the outage backoff and logged "the store failed".
    faulty = FaultyDatabase(db, seed=7, read_future_version=0.03)
    queue = qq.JobQueue(faulty, jobs=[Ok], clock=clock, dequeue_max=2)
    with faulty.paused():
        jobs = {queue.enqueue(f"t{n % 5}", "rb:ok", {"n": n}): f"t{n % 5}" for n in range(40)}
    with caplog.at_level("WARNING", logger="quick_queue.worker"):
        summary = queue.drain(concurrency=2, timeout=30)
    assert summary.completed == 40
    assert summary.extra.get("visit_retries", 0) > 0
    assert faulty.injected["read_future_version"] > 0
    assert _leasing_failures(caplog) == []
    with faulty.paused():
        assert all(queue.get_job(t, j) is None for j, t in jobs.items())


def test_retryable_read_errors_visit_after_visit_are_an_outage_with_backoff(
    db: qq.Database, clock: qq.ManualClock, background: Any, wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faulty = FaultyDatabase(db, seed=7)
    queue = qq.JobQueue(faulty, jobs=[Ok], clock=clock)
    jobs = {queue.enqueue(f"t{n}", "rb:ok", {}): f"t{n}" for n in range(4)}
    # Half of all reads fail: a scan (one read, retried by its transaction's retry loop) gets
    # through, a visit (about 7 reads, tried once) almost never does.
    faulty.set_rates(read_future_version=0.5)
    with caplog.at_level("WARNING", logger="quick_queue.worker"):
        run = background(queue.run, concurrency=2, log=False)
        wait_until(lambda: _leasing_failures(caplog), what="the outage's log line")
        assert not run.done()
        faulty.set_rates(read_future_version=0.0)  # the store recovers
        with faulty.paused():
            wait_until(lambda: all(queue.get_job(t, j) is None for j, t in jobs.items()),
                       what="every job")
        queue.stop()
        summary = run.result()
    assert summary.completed == 4
    assert len(_leasing_failures(caplog)) == 1  # once per outage, not once per try
    assert summary.extra.get("visit_retries", 0) >= VISIT_RETRIES  # passed over at first
    assert any("the store is back (leasing jobs" in r.getMessage() for r in caplog.records)
