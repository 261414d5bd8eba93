"""Fixtures of the core unit tests: a fresh ephemeral database and a ``Core`` harness on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import quick_queue.kv as kv
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from tests.support.corekit import Core


@pytest.fixture
def db() -> Iterator[Database]:
    database = kv.open("memory://")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def core(db: Database) -> Core:
    return Core(db, Layout("unit"))
