"""Fixtures of the core unit tests: a ``Core`` harness on the ``db`` fixture (tests/conftest.py:
memory://, its time the ``clock`` fixture)."""

from __future__ import annotations

import pytest

from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from tests.support.corekit import Core


@pytest.fixture
def core(db: Database) -> Core:
    return Core(db, Layout("unit"))
