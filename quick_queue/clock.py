"""Clocks. Everything that decides time (due, backoff, leases) asks one, so tests move time
instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the UNIX epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class _HasStoreTime(Protocol):
    def store_time(self) -> float: ...


class StoreClock:
    """The store's time (``Database.store_time()``), the default clock of a ``JobQueue``: due
    times, leases and the views' "now" then all come from the one time every worker of the
    store shares, whatever each host's wall clock says (DESIGN.md §8)."""

    def __init__(self, db: _HasStoreTime) -> None:
        self.db = db

    def now(self) -> float:
        return self.db.store_time()


class ManualClock:
    """A clock that moves only when told: ``advance(seconds)`` or ``set(timestamp)``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def set(self, timestamp: float) -> None:
        with self._lock:
            self._now = timestamp
