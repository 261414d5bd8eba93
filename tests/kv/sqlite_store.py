"""Fixtures and a helper shared by the embedded engine's own tests: a store file in the test's
folder, a handle on it closed at the end, and a one-write transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Transaction
from quick_queue.kv.sqlite_engine import SQLiteDatabase


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "kv.db")


@pytest.fixture
def db(path: str) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(path)
    yield database
    database.close()


def put(db: kv.Database, key: bytes, value: bytes) -> None:
    def write(tr: Transaction) -> None:
        tr.set(key, value)

    db.transact(write)
