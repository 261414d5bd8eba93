"""The embedded engine's WAL starts over under steady commits (``sqlite_group_commit``: "SQLite
starts the WAL over ..."): the background checkpoint asks the writer to catch up when the WAL
is long, the writer copies the rest right after a commit, and the next commit restarts it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.sqlite_engine import PAGE_SIZE, SQLiteDatabase
from quick_queue.kv.sqlite_group_commit import catch_up_frames


def open_store(path: Path) -> SQLiteDatabase:
    db = kv.open(f"sqlite:///{path}")
    assert isinstance(db, SQLiteDatabase)
    return db


def commit_rows(db: SQLiteDatabase, count: int, start: int = 0) -> None:
    """Transactions shaped like an enqueue: a point read, then a record and an index entry."""
    for n in range(start, start + count):
        def write(tr: kv.Transaction, n: int = n) -> None:
            tr.get(b"marker")
            tr.set(b"job/%08d" % n, b"x" * 300)
            tr.set(b"index/%08d" % n, b"")
        db.transact(write)


def wal_frames(path: Path) -> int:
    """Frames in the WAL's current run (a checkpoint reports them; it copies nothing new)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1])
    finally:
        conn.close()


def test_a_long_wal_restarts_after_the_writer_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    db = open_store(path)
    # This test plays the background thread's part itself: without that thread, a pause of a
    # loaded machine cannot let the WAL restart on its own before the first assertion.
    monkeypatch.setattr(db, "_start_checkpointer", lambda: None)
    try:
        frames = catch_up_frames(PAGE_SIZE)
        commit_rows(db, frames // 2)  # each commit writes two pages or more
        assert wal_frames(path) >= frames
        checkpointer = db._connect()
        db._checkpoint_once(checkpointer)  # what the background thread does
        assert db._catch_up
        commit_rows(db, 2, start=10**6)  # the first catches up, the second restarts the WAL
        assert not db._catch_up
        assert wal_frames(path) < 20
        assert db.transact(lambda tr: tr.get(b"job/%08d" % 7)) == b"x" * 300
    finally:
        db.close()


def test_the_wal_file_stays_bounded_under_steady_commits(tmp_path: Path) -> None:
    """The background thread alone (every ``CHECKPOINT_EVERY`` commits) drives it. Measured
    (4 kB pages): without the catch-up this WAL grew by ~17.6 MB per 1,000 commits and never
    restarted (70 MB here); with it and a checkpoint every 1,000 commits, it restarted at
    ~17.5 MB; every 100 commits (the twelfth pass of issue 10), at ~3.6 MB (the bound leaves
    room for a background thread slowed down by a loaded machine)."""
    path = tmp_path / "store.db"
    db = open_store(path)
    try:
        commit_rows(db, 4000)
        size = os.path.getsize(f"{path}-wal")
        assert size < 12_000_000, f"WAL of {size} bytes after 4,000 commits"
    finally:
        db.close()


def test_large_commits_wake_the_background_checkpoint_before_a_thousand(tmp_path: Path) -> None:
    """Commits of a worker's shape (hundreds of keys each) are counted by the keys they write
    (``CHECKPOINT_KEYS``). Measured: counted by commits, these 200 grew the WAL to 220 MB,
    never restarting it; counted by keys, 16-17 MB (the bound leaves room for a background
    thread slowed down by a loaded machine)."""
    path = tmp_path / "store.db"
    db = open_store(path)
    try:
        for n in range(200):
            def write(tr: kv.Transaction, n: int = n) -> None:
                for k in range(300):
                    tr.set(b"job/%04d/%04d" % (k, n), b"x" * 200)
            db.transact(write)
        size = os.path.getsize(f"{path}-wal")
        assert size < 80_000_000, f"WAL of {size} bytes after 200 commits of 300 keys"
    finally:
        db.close()
