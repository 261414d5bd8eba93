"""What one dashboard refresh costs the store: transactions and reads, counted (not timed).

    .venv/bin/python -m tests.web.refresh_cost [TENANTS]

Fills a memory store with TENANTS tenants (10,000 by default) holding one ready job each (plus
a scheduled job every tenth tenant), then takes one dashboard
snapshot (what every page and /metrics share) through a database wrapper that counts
transactions, read calls and rows read, and prints the counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import quick_queue as qq
from quick_queue.web.snapshot import Snapshots


@dataclass
class Counts:
    transactions: int = 0
    read_calls: int = 0
    rows: int = 0


class CountingReads:
    """A transaction's reads, counted (everything else passes through)."""

    def __init__(self, inner: Any, counts: Counts) -> None:
        self._inner = inner
        self._counts = counts

    def get(self, key: bytes) -> Any:
        self._counts.read_calls += 1
        value = self._inner.get(key)
        self._counts.rows += value is not None
        return value

    def get_range(self, *args: Any, **kwargs: Any) -> Any:
        self._counts.read_calls += 1
        rows = list(self._inner.get_range(*args, **kwargs))
        self._counts.rows += len(rows)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingTransaction(CountingReads):
    @property
    def snapshot(self) -> CountingReads:
        return CountingReads(self._inner.snapshot, self._counts)


class CountingDatabase:
    def __init__(self, inner: qq.Database) -> None:
        self.inner = inner
        self.counts = Counts()

    def transact(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def counted(tr: Any, *a: Any, **k: Any) -> Any:
            self.counts.transactions += 1
            return fn(CountingTransaction(tr, self.counts), *a, **k)

        return self.inner.transact(counted, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class View:
    """What the read model needs: db, layout, clock."""

    db: Any
    layout: Any
    clock: Any


def measure(tenants: int) -> Counts:
    db = qq.open("memory://")
    queue = qq.JobQueue(db)
    for start in range(0, tenants, 500):
        batch = []
        for n in range(start, min(tenants, start + 500)):
            batch.append({"tenant": f"tenant-{n:05d}", "topic": "t", "payload": {"n": n}})
            if n % 10 == 0:
                batch.append({"tenant": f"tenant-{n:05d}", "topic": "t", "payload": {},
                              "in_": 3600})
        queue.enqueue_many(batch)
    counting = CountingDatabase(db)
    Snapshots(View(counting, queue.layout, queue.clock), queue.name).get()
    return counting.counts


def main(argv: list[str]) -> None:
    tenants = int(argv[0]) if argv else 10_000
    counts = measure(tenants)
    print(f"{tenants} tenants queued: one dashboard refresh = {counts.transactions} "
          f"transactions, {counts.read_calls} read calls, {counts.rows} rows read")


if __name__ == "__main__":
    main(sys.argv[1:])
