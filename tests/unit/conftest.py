"""Fixtures of the core unit tests: a fresh ephemeral database and a ``Core`` harness on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import quick_queue.kv as kv
from quick_queue.clock import ManualClock
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from tests.support.corekit import Core


@pytest.fixture
def db(clock: ManualClock) -> Iterator[Database]:
    """The engine's time is the ``clock`` fixture (core tests pass their own ``now``; queue
    tests built on this db and that clock see one time)."""
    database = kv.open("memory://", clock=clock)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def core(db: Database) -> Core:
    return Core(db, Layout("unit"))
