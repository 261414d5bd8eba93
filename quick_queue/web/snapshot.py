"""What the dashboard shows, read from the store at most once per ``refresh`` seconds however
many pages poll it (every page, every API read of the overview and ``/metrics`` share one
snapshot), and less often when one read takes long (``READ_SHARE``).

The cost of a refresh is the read model's (see ``quick_queue.read_model``): one short snapshot
transaction per zone with work (its pointer and three index ranges), a page of tenants per
thousand zones, the dead-letter count and the per-topic counters; live workers are one more
read. Measured with ``python -m tests.web.refresh_cost``: 10,000 tenants queued cost 10,014
transactions, 40,014 read calls and 31,001 rows per refresh.

Throughput over the last hour comes from the store's per-topic counters (every worker adds to
them), sampled at each refresh and kept here: the dashboard measures it by watching, so a
freshly started dashboard shows the rate since it started.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quick_queue import read_model
from quick_queue.core.workers import WorkerInfo
from quick_queue.live_workers import workers
from quick_queue.read_model import Overview, ReadContext

HOUR = 3600.0
#: A snapshot waits at least this many times as long as the last one took to read, so the
#: dashboard spends at most a tenth of its time reading however large the queue grows.
READ_SHARE = 9.0
ZONE_LIMIT = 100  # the deepest zones a snapshot keeps (the tenants page shows them)


@dataclass
class Snapshot:
    overview: Overview
    workers: list[WorkerInfo]
    taken: float  # monotonic
    completed: int  # store totals at the time of the snapshot
    failed: int

    def waited(self, zone: read_model.ZoneView) -> float | None:
        """Seconds the zone's longest-waiting due job has waited (None: nothing due)."""
        due = zone.due_since(self.overview.now)
        return None if due is None else max(0.0, (self.overview.now - due).total_seconds())


def _totals(topics: dict[str, dict[str, int]]) -> tuple[int, int]:
    completed = sum(c.get("completed", 0) for c in topics.values())
    failed = sum(c.get("failed", 0) for c in topics.values())
    return completed, failed


class Snapshots:
    """The shared, rate-limited snapshot (thread-safe: one refresh at a time)."""

    def __init__(self, ctx: ReadContext, name: str, refresh: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.name = name
        self.refresh = refresh
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self.last_read = 0.0  # seconds the last snapshot took to read
        # (monotonic time, completed, failed) samples of the last hour, one per refresh
        self._history: deque[tuple[float, int, int]] = deque(
            maxlen=int(HOUR / max(refresh, 1.0)) + 2)

    def get(self) -> Snapshot:
        with self._lock:
            current = self._current
            if current is None or self.monotonic() - current.taken >= self.interval():
                current = self._current = self._take()
            return current

    def interval(self) -> float:
        """Seconds between two reads of the store: ``refresh``, or longer on a queue whose
        snapshot takes long to read (``READ_SHARE``)."""
        return max(self.refresh, READ_SHARE * self.last_read)

    def invalidate(self) -> None:
        """The next read refreshes (after an action, so the page shows its effect)."""
        with self._lock:
            self._current = None

    def _take(self) -> Snapshot:
        began = self.monotonic()
        overview = read_model.overview(self.ctx, self.name, zone_limit=ZONE_LIMIT)
        live = workers(self.ctx)
        completed, failed = _totals(overview.stats.topics)
        now = self.monotonic()
        self.last_read = now - began
        self._history.append((now, completed, failed))
        while self._history and now - self._history[0][0] > HOUR:
            self._history.popleft()
        return Snapshot(overview, live, now, completed, failed)

    def throughput(self) -> dict[str, Any]:
        """Jobs completed and failed over the window watched (at most the last hour)."""
        with self._lock:
            if not self._history:
                return {"window_seconds": 0.0, "completed": 0, "failed": 0, "series": []}
            first, last = self._history[0], self._history[-1]
            series = [{"seconds_ago": round(last[0] - t, 1), "completed": c, "failed": f}
                      for t, c, f in self._history]
        return {"window_seconds": round(last[0] - first[0], 1), "completed": last[1] - first[1],
                "failed": last[2] - first[2], "series": series[-120:]}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
