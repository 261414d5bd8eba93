"""Contract: the store's time (``Database.store_time``), the one time every process using a
store compares leases against, on every engine."""

from __future__ import annotations

import time

import quick_queue.kv as kv
from quick_queue.kv.api import Database


def _same_store(db: Database) -> Database:
    """A second handle on ``db``'s store, as another process would open it."""
    if db.url == "memory://":
        return db  # an ephemeral store has no second handle
    return kv.open(db.url)


def test_store_time_is_near_the_hosts_clock_and_never_goes_back(db: Database) -> None:
    readings = [db.store_time() for _ in range(20)]
    assert readings == sorted(readings)
    # FoundationDB's is anchored to the clock of the first process that asked (maybe an earlier
    # run): near, not equal.
    assert abs(readings[0] - time.time()) < 600


def test_two_handles_on_one_store_agree(db: Database) -> None:
    other = _same_store(db)
    try:
        first = db.store_time()
        second = other.store_time()
        third = db.store_time()
        assert first - 0.5 <= second <= third + 0.5
    finally:
        if other is not db:
            other.close()
