"""The wake-up folder of a file store lives as long as some handle of the store is open
(``kv/wakeup.py``, "The folder is removed when the last handle of the store closes"): the last
handle out removes it with what dead processes left in it, and a handle that attached to a
presence file being removed attaches again to the new one."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import quick_queue.kv as kv
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.wakeup import PRESENCE, CommitSignal

DEADLINE = 10.0


def open_store(path: Path) -> SQLiteDatabase:
    db = kv.open(f"sqlite:///{path}")
    assert isinstance(db, SQLiteDatabase)
    return db


def used(db: SQLiteDatabase) -> str:
    """Make the store's folder hold what a working handle leaves there: a turn file (commits)
    and a socket (an idle waiter)."""
    db.transact(lambda tr: tr.set(b"k", b"v"))
    db.wait_for_change(0.0)
    folder = db._signal.folder
    assert os.path.exists(os.path.join(folder, "writer.turn"))
    assert any(name.endswith(".sock") for name in os.listdir(folder))
    return folder


def test_closing_the_only_handle_removes_the_folder(tmp_path: Path) -> None:
    db = open_store(tmp_path / "a.db")
    folder = used(db)
    db.close()
    assert not os.path.exists(folder)
    assert (tmp_path / "a.db").exists()  # the store itself stays, of course


def test_the_folder_stays_while_another_handle_is_open(tmp_path: Path) -> None:
    first, second = open_store(tmp_path / "a.db"), open_store(tmp_path / "a.db")
    folder = used(first)
    used(second)
    first.close()
    assert os.path.isdir(folder)
    second.transact(lambda tr: tr.set(b"k", b"w"))  # still takes turns in its folder
    assert os.path.exists(os.path.join(folder, "writer.turn"))
    second.close()
    assert not os.path.exists(folder)


def test_the_folder_stays_while_another_process_has_the_store_open(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = open_store(path)
    folder = used(db)
    with subprocess.Popen(
        [sys.executable, "-c",
         "import sys, quick_queue.kv as kv; db = kv.open(sys.argv[1]); print('open', flush=True);"
         " sys.stdin.readline(); db.close()", f"sqlite:///{path}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "open"
            db.close()
            assert os.path.isdir(folder)
        finally:
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait(timeout=DEADLINE) == 0
    assert not os.path.exists(folder)  # the child was the last handle out


def test_what_dead_processes_left_goes_with_the_folder(tmp_path: Path) -> None:
    db = open_store(tmp_path / "a.db")
    folder = used(db)
    # the socket of a waiter whose process died without closing
    Path(folder, "12345-deadbeef.sock").write_bytes(b"")
    db.close()
    assert not os.path.exists(folder)


def waiting_for_shared_lock(path: str) -> bool:
    """Whether some task waits for an flock on the file at ``path`` (Linux's /proc/locks marks
    a blocked request with ``->``)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        return any("->" in line and f":{inode} " in line for line in locks)


def test_a_handle_that_locked_a_removed_presence_file_attaches_again(tmp_path: Path) -> None:
    db_path = str(tmp_path / "a.db")
    first = CommitSignal(db_path)
    folder = first.folder
    presence = os.path.join(folder, PRESENCE)
    # Act as the last handle closing: hold the exclusive lock while the folder is removed.
    first.close()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    closer = os.open(presence, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(closer, fcntl.LOCK_EX)
    made: list[CommitSignal] = []
    opener = threading.Thread(target=lambda: made.append(CommitSignal(db_path)))
    opener.start()
    deadline = time.monotonic() + DEADLINE
    while not waiting_for_shared_lock(presence):  # the opener holds the old file, blocked
        assert time.monotonic() < deadline, "the opener never waited for the lock"
        time.sleep(0.001)
    os.unlink(presence)
    os.rmdir(folder)
    os.close(closer)  # lets the opener's lock through, on a file no longer in the folder
    opener.join(DEADLINE)
    assert made, "the opener did not finish"
    try:
        # It attached to a new presence file: a would-be last handle cannot take it over.
        probe = os.open(presence, os.O_RDONLY)
        try:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the new handle holds no share of the presence file")
            except BlockingIOError:
                pass
        finally:
            os.close(probe)
    finally:
        made[0].close()
    assert not os.path.exists(folder)


def test_a_process_that_exits_without_closing_its_store_removes_the_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    script = (
        "import sys, quick_queue.kv as kv\n"
        "db = kv.open(sys.argv[1])\n"
        "db.transact(lambda tr: tr.set(b'k', b'v'))\n"
        "db.wait_for_change(0.0)\n"
        "print(db._signal.folder, flush=True)\n"  # and exits with the store still open
    )
    done = subprocess.run([sys.executable, "-c", script, f"sqlite:///{path}"],
                          capture_output=True, text=True, timeout=DEADLINE, check=True)
    folder = done.stdout.strip()
    assert folder.startswith(tempfile.gettempdir())
    assert not os.path.exists(folder)
