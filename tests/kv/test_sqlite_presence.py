"""A handle alone on its file leaves its commits out of the shared conflict log
(``kv/sqlite_presence.py``), and hands over correctly: a handle that attaches later, in this
process or in another one, still sees every conflict, and the handle goes back to the fast
path once the other has gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quick_queue.kv import sqlite_engine
from quick_queue.kv.errors import NOT_COMMITTED, KVError
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_presence import LOCK_SUFFIX

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "kv.db")


@pytest.fixture
def db(path: str) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(path)
    yield database
    database.close()


def log_rows(db: SQLiteDatabase) -> int:
    return int(db._writer.execute("SELECT count(*) FROM qq_log").fetchone()[0])


def put(db: SQLiteDatabase, key: bytes, value: bytes) -> None:
    db.transact(lambda tr: tr.set(key, value))


def test_a_handle_alone_logs_nothing_and_still_moves_the_version(db: SQLiteDatabase) -> None:
    put(db, b"k", b"0")
    rows, version = log_rows(db), db._current_version(db._writer)
    for i in range(5):
        put(db, b"k", b"%d" % i)
    assert log_rows(db) == rows
    assert db._current_version(db._writer) == version + 5
    stamp = db.create_transaction()
    stamp.set(b"x", b"y")
    future = stamp.get_versionstamp()
    stamp.commit()
    assert future.wait()[:8] == (version + 6).to_bytes(8, "big")


def test_a_handle_attaching_later_in_this_process_sees_the_conflict(
    db: SQLiteDatabase, path: str
) -> None:
    put(db, b"k", b"1")  # alone: not logged
    late = SQLiteDatabase(path)
    try:
        reader = late.create_transaction()
        assert reader.get(b"k") == b"1"
        rows = log_rows(db)
        put(db, b"k", b"2")  # after the attach: logged, so ``late`` can check against it
        assert log_rows(db) == rows + 1
        reader.set(b"k", b"3")
        with pytest.raises(KVError) as info:
            reader.commit()
        assert info.value.code == NOT_COMMITTED
    finally:
        late.close()


CHILD = """
import sys
from quick_queue.kv.errors import KVError
from quick_queue.kv.sqlite_engine import SQLiteDatabase
db = SQLiteDatabase(sys.argv[1])
tr = db.create_transaction()
print("read", tr.get(b"k").decode(), flush=True)
sys.stdin.readline()  # the parent commits a write of k meanwhile
tr.set(b"k", b"child")
try:
    tr.commit()
    print("committed", flush=True)
except KVError as error:
    print("error", error.code, flush=True)
db.close()
"""


def run_child(path: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )


def finish(child: subprocess.Popen[str], *, kill: bool = False) -> None:
    if kill or child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


class Later:
    """``time`` as the engine sees it, moved past its once-a-second upkeep."""

    def __init__(self) -> None:
        self.shift = 0.0

    def time(self) -> float:
        return time.time() + self.shift

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_another_process_attaching_later_sees_the_conflict_then_hands_back(
    db: SQLiteDatabase, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(db, b"k", b"parent-1")
    rows = log_rows(db)
    put(db, b"k", b"parent-2")
    assert log_rows(db) == rows  # alone so far
    child = run_child(path)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().split() == ["read", "parent-2"]
        put(db, b"k", b"parent-3")  # the child is attached: this commit is logged
        assert log_rows(db) == rows + 1
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["error", str(NOT_COMMITTED)]
        assert child.wait(timeout=60) == 0
    finally:
        finish(child)
    assert db.transact(lambda tr: tr.get(b"k")) == b"parent-3"
    # The child has gone: the next upkeep (once a second) finds the handle alone again.
    clock = Later()
    monkeypatch.setattr(sqlite_engine, "time", clock)
    clock.shift = 2.0
    put(db, b"k", b"parent-4")
    rows = log_rows(db)
    put(db, b"k", b"parent-5")
    assert log_rows(db) == rows


def test_a_killed_process_no_longer_counts(db: SQLiteDatabase, path: str) -> None:
    put(db, b"k", b"v")
    child = run_child(path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split()[0] == "read"
        rows = log_rows(db)
        put(db, b"k", b"x")
        assert log_rows(db) == rows + 1  # the child holds its presence: logged
    finally:
        finish(child, kill=True)
    assert db._presence is not None and db._presence.alone()


def test_the_lock_file_goes_with_the_last_handle(path: str) -> None:
    first, second = SQLiteDatabase(path), SQLiteDatabase(path)
    assert os.path.exists(path + LOCK_SUFFIX)
    first.close()
    assert os.path.exists(path + LOCK_SUFFIX)
    second.close()
    assert not os.path.exists(path + LOCK_SUFFIX)
    again = SQLiteDatabase(path)  # and comes back with the next one
    try:
        assert again._presence is not None and again._presence.usable
        put(again, b"k", b"v")
    finally:
        again.close()


def test_a_read_only_handle_takes_no_part(db: SQLiteDatabase, path: str) -> None:
    put(db, b"k", b"v")
    reader = SQLiteDatabase(path, read_only=True)
    try:
        assert reader._presence is None
        assert reader.transact(lambda tr: tr.get(b"k")) == b"v"
        rows = log_rows(db)
        put(db, b"k", b"w")
        assert log_rows(db) == rows  # a reader never commits writes: still alone
        assert reader.transact(lambda tr: tr.get(b"k")) == b"w"
    finally:
        reader.close()
