"""Committers of one embedded store take turns at its write lock (``kv/sqlite_writer_turn``):
a waiter proceeds as soon as the holder lets go, a frozen holder delays it by at most the
timeout, and a store where the turn file cannot be made still commits."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_writer_turn import WriterTurn

DEADLINE = 10.0


def wait_until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def hold_turn(path: str) -> int:
    """Take the turn at ``path`` as another process would (its own open file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def turn_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_waiter_goes_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = str(tmp_path / "writer.turn")
    turn = WriterTurn(path, timeout=DEADLINE)
    held = hold_turn(path)
    taken = threading.Event()

    def take() -> None:
        turn.acquire()
        taken.set()

    thread = threading.Thread(target=take)
    thread.start()
    wait_until(lambda: turn.waits == 1, "the waiter to find the turn taken")
    assert not taken.is_set()
    started = time.monotonic()
    os.close(held)  # the holder lets go (as a process that exits would)
    thread.join(DEADLINE)
    assert taken.is_set()
    assert time.monotonic() - started < 1.0  # polled in µs, not left to SQLite's ms sleeps
    assert not turn_is_free(path)  # the waiter holds it now
    turn.release()
    assert turn_is_free(path)
    turn.close()


def test_a_frozen_holder_delays_a_commit_by_the_timeout_only(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    db = kv.open(f"sqlite:///{path}")
    assert isinstance(db, SQLiteDatabase)
    db.transact(lambda tr: tr.set(b"first", b"1"))  # the store's folders exist from here on
    db._turn.timeout = 0.05
    # Holds the turn, never SQLite's lock: SQLite lets the commit in once the turn times out.
    held = hold_turn(db._turn.path)
    try:
        started = time.monotonic()
        db.transact(lambda tr: tr.set(b"k", b"v"))
        assert time.monotonic() - started >= 0.05
        assert db._turn.waits == 1
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
    finally:
        os.close(held)
        db.close()


def test_every_commit_gives_the_turn_back(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    db = kv.open(f"sqlite:///{path}")
    assert isinstance(db, SQLiteDatabase)
    try:
        db.transact(lambda tr: tr.set(b"a", b"1"))
        assert turn_is_free(db._turn.path)

        def conflicting(tr: kv.Transaction) -> None:
            tr.set(b"b", b"2")
            raise RuntimeError("the caller's function failed")

        with pytest.raises(RuntimeError):
            db.transact(conflicting)
        assert turn_is_free(db._turn.path)
    finally:
        db.close()


def test_two_handles_of_one_process_take_turns(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    first = kv.open(f"sqlite:///{path}")
    second = kv.open(f"sqlite:///{path}")
    assert isinstance(first, SQLiteDatabase) and isinstance(second, SQLiteDatabase)
    try:
        first._turn.acquire()  # as if the first handle were mid-commit
        done = threading.Event()

        def commit() -> None:
            second.transact(lambda tr: tr.set(b"x", b"1"))
            done.set()

        thread = threading.Thread(target=commit)
        thread.start()
        wait_until(lambda: second._turn.waits == 1, "the second handle to wait its turn")
        assert not done.is_set()
        first._turn.release()
        thread.join(DEADLINE)
        assert done.is_set()
        assert first.transact(lambda tr: tr.get(b"x")) == b"1"
    finally:
        first.close()
        second.close()


def test_no_turn_file_means_sqlite_decides(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    db = kv.open(f"sqlite:///{path}")
    assert isinstance(db, SQLiteDatabase)
    db._turn.close()
    db._turn.path = str(tmp_path / "dir.turn")
    os.mkdir(db._turn.path)  # a folder where the file would go: it cannot be opened as one
    try:
        db.transact(lambda tr: tr.set(b"k", b"v"))
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
        assert db._turn.waits == 0
    finally:
        db.close()


def test_an_ephemeral_store_leaves_nothing_in_the_temporary_folder() -> None:
    db = kv.open("memory://")
    assert isinstance(db, SQLiteDatabase)
    folder = db._signal.folder
    db.transact(lambda tr: tr.set(b"k", b"v"))
    db.wait_for_change(0.0)  # a waiter makes the wake-up folder and its socket
    assert os.path.isdir(folder)
    assert not os.path.exists(db._turn.path)  # one handle, no other process: no turns
    db.close()
    assert not os.path.exists(folder)


def test_a_forked_child_takes_turns_with_its_parent(tmp_path: Path) -> None:
    # The turn's file is opened once per process (the process id is kept by a fork hook, not
    # asked at each commit): a forked child must not use the parent's open file, on which the
    # parent's flock would count as its own and let both commit at once.
    turn = WriterTurn(str(tmp_path / "writer.turn"), timeout=0.05)
    turn.acquire()  # the parent holds its turn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own file, so the parent's turn blocks it
        try:
            fd = turn._file()
            assert fd is not None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                answer = b"took the parent's turn"
            except BlockingIOError:
                answer = b"waits"
            os.write(write, answer)
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 100)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        turn.release()
        turn.close()
    assert answer == b"waits"
