"""Fixtures and helpers shared by the embedded engine's own tests: a store file in the test's
folder, a handle on it closed at the end, a one-write transaction, the statements a commit runs,
and a writer made quiet (one that no longer asks whether another connection committed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Transaction
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_group_commit import QUIET_BATCHES


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


def statements_of(db: SQLiteDatabase, step: Callable[[Transaction], object]) -> list[str]:
    """The statements the writer's connection ran to commit ``step``, as SQLite traced them."""
    seen: list[str] = []
    db._writer.set_trace_callback(seen.append)
    try:
        db.transact(step)
    finally:
        db._writer.set_trace_callback(None)
    return seen


def traced(db: SQLiteDatabase, step: Callable[[Transaction], object]) -> list[str]:
    """``statements_of``, each up to its values (without the log's pruning, once a
    second)."""
    return [
        text.split(" (")[0].split(" VALUES")[0].split(" WHERE")[0]
        for text in statements_of(db, step) if not text.startswith("DELETE FROM qq_log")
    ]


def quieten(db: SQLiteDatabase) -> None:
    """Commit alone until the writer no longer asks whether another connection committed
    (``sqlite_group_commit.QUIET_BATCHES``); checked on the next commit."""
    for i in range(QUIET_BATCHES + 1):
        put(db, b"quiet/%d" % i, b"x")
    assert "PRAGMA data_version" not in traced(db, lambda tr: tr.set(b"quiet/", b"x"))
