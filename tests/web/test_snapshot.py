"""The dashboard's shared snapshot: one read of the store per refresh however many readers, and
fewer on a queue whose snapshot takes long to read."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq

pytest.importorskip("fastapi", reason="the dashboard needs the web extra: pip install -e .[web]")

from quick_queue.web.snapshot import READ_SHARE, Snapshots


class SlowReads:
    """A database whose every transaction takes ``cost`` seconds of a fake monotonic clock."""

    def __init__(self, inner: qq.Database, cost: float) -> None:
        self.inner = inner
        self.cost = cost
        self.now = 0.0
        self.transactions = 0

    def transact(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.now += self.cost
        self.transactions += 1
        return self.inner.transact(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class View:
    def __init__(self, queue: qq.JobQueue, db: SlowReads) -> None:
        self.db, self.layout, self.clock = db, queue.layout, queue.clock


@pytest.mark.parametrize("cost", [0.0, 0.25])  # binary fractions: exact sums
def test_readers_share_one_read_per_interval(db: qq.Database, cost: float) -> None:
    queue = qq.JobQueue(db)
    for n in range(20):
        queue.enqueue(f"t{n}", "x", {})
    slow = SlowReads(db, cost)
    snapshots = Snapshots(View(queue, slow), "default", refresh=2.0, monotonic=lambda: slow.now)
    first = snapshots.get()
    per_read = slow.transactions
    assert first.overview.stats.ready == 20 and per_read >= 20
    for _ in range(50):  # many pages polling within the interval
        assert snapshots.get() is first
    assert slow.transactions == per_read
    interval = max(2.0, READ_SHARE * cost * per_read)
    assert snapshots.interval() == pytest.approx(interval)
    slow.now += interval - 0.5
    assert snapshots.get() is first
    slow.now += 0.5
    assert snapshots.get() is not first and slow.transactions == 2 * per_read
