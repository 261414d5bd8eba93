"""A worker's heartbeat is a relaxed commit: listed at once, but on the embedded engine its
batch does not wait for an fsync while it holds the store's write turn (an enqueue committing
meanwhile would wait for it: pick-up latency, issue 10)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import quick_queue as qq
from quick_queue.consumer.heartbeat import Heartbeat
from quick_queue.consumer.inflight import InFlight
from quick_queue.context import QueueContext
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.live_workers import workers
from quick_queue.telemetry import Counters


@dataclass(eq=False)  # hashable: the table of live consumers is a weak set
class _Consumer:
    context: QueueContext
    inflight: InFlight
    counters: Counters


def _level(db: SQLiteDatabase) -> int:
    """The writer's synchronous level: 2 FULL (the last batch synced), 1 NORMAL (relaxed)."""
    return int(db._writer.execute("PRAGMA synchronous").fetchone()[0])


def test_a_beat_is_listed_at_once_and_its_commit_is_not_synced(tmp_path: Path) -> None:
    db = qq.open(f"sqlite:///{tmp_path}/q.db")
    assert isinstance(db, SQLiteDatabase)
    try:
        queue = qq.JobQueue(db)
        queue.enqueue("a", "x", {})  # a durable commit first: the writer is at FULL
        assert _level(db) == 2
        heartbeat = Heartbeat(_Consumer(queue.context, InFlight(2), Counters()))
        heartbeat.beat()
        assert _level(db) == 1  # the beat's batch ran relaxed
        assert [worker.worker_id for worker in workers(queue)] == [heartbeat.worker_id]
        queue.enqueue("a", "x", {})  # the next durable commit syncs it with its own
        assert _level(db) == 2
        heartbeat.stop()  # (never started: only clears the record, durably)
        assert workers(queue) == []
        assert _level(db) == 2
    finally:
        db.close()


class _HeldTable:
    """A consumer's in-flight table whose first read (the first beat's) waits for ``go``
    after it has been read: that beat then commits after whatever happens meanwhile."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.concurrency = 2
        self.jobs: list[tuple[str, str]] = []
        self.reads = 0
        self.first_read = threading.Event()
        self.second_read = threading.Event()
        self.go = threading.Event()

    @property
    def entries(self) -> list[tuple[str, str]]:
        self.reads += 1
        jobs = list(self.jobs)
        if self.reads == 1:
            self.first_read.set()
            self.go.wait(10)
        else:
            self.second_read.set()
        return jobs


def test_a_beat_never_lands_before_an_earlier_one(tmp_path: Path) -> None:
    """The registration beat runs in the heartbeat's thread while the consumer starts; a beat
    made meanwhile (with a job leased since) must not be overwritten by it."""
    db = qq.open(f"sqlite:///{tmp_path}/q.db")
    try:
        queue = qq.JobQueue(db)
        table = _HeldTable()
        heartbeat = Heartbeat(_Consumer(queue.context, table, Counters()))  # type: ignore[arg-type]
        first = threading.Thread(target=heartbeat.beat)
        first.start()
        assert table.first_read.wait(10)  # the first beat read no jobs, and has not committed
        table.jobs.append(("acme", "j1"))
        second = threading.Thread(target=heartbeat.beat)
        second.start()
        # Before beats were one at a time, the second read the job here and committed first;
        # now it waits for the first beat (so this wait runs out).
        table.second_read.wait(0.3)
        table.go.set()
        first.join(10)
        second.join(10)
        assert [w.jobs for w in workers(queue)] == [[("acme", "j1")]]
    finally:
        db.close()
