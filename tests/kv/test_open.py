"""``kv.open``: URL forms, read-only opens, foreign files, the store's time."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.errors import ForeignDatabase, StorageError


class StepClock:
    """A structural clock (only ``now()``), as ``quick_queue.clock.ManualClock`` is."""

    def __init__(self, start: float) -> None:
        self.value = start

    def now(self) -> float:
        return self.value


def _store(path: Path) -> None:
    with kv.open(f"sqlite:///{path}") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The folder's files, without the sidecars SQLite needs to read a WAL file safely while
    others write to it (a read-only open may create them, empty of data, and cannot delete
    them)."""
    files = {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}
    assert files.pop("q.db-wal", b"") == b""  # nothing was ever written through it
    files.pop("q.db-shm", None)
    return files


# -- URL forms --------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["sqlite:/x.db", "sqlite:x.db", "SQLite:/x.db"])
def test_a_sqlite_url_with_too_few_slashes_says_how_to_write_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        kv.open(url)
    message = str(info.value)
    assert "no scheme" not in message
    assert "sqlite:///x.db" in message and "sqlite:////x.db" in message


def test_other_bad_urls_keep_clear_messages() -> None:
    with pytest.raises(ValueError, match="no scheme"):
        kv.open("queue.db")
    with pytest.raises(ValueError, match="two slashes"):
        kv.open("fdb:/etc/foundationdb/fdb.cluster")
    with pytest.raises(ValueError, match="unknown scheme 'postgres'"):
        kv.open("postgres://x")


def test_a_folder_as_the_path_is_named_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        kv.open(f"sqlite:///{tmp_path}")
    assert "is a folder" in str(info.value) and str(tmp_path / "queue.db") in str(info.value)
    assert "missing folder" not in str(info.value)


# -- read-only ----------------------------------------------------------------------------------
def test_read_only_reads_a_store_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    _store(path)
    before = _snapshot(tmp_path)
    with kv.open(f"sqlite:///{path}", read_only=True) as db:
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
        assert db.transact(lambda tr: tr.get_range(b"", b"\xff")) == [(b"k", b"v")]
        with pytest.raises(StorageError, match="read-only"):
            db.transact(lambda tr: tr.set(b"k", b"w"))
    assert _snapshot(tmp_path) == before  # no byte changed, no -wal or -shm left behind


def test_read_only_of_a_missing_file_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(StorageError, match="does not exist"):
        kv.open(f"sqlite:///{path}", read_only=True)
    assert os.listdir(tmp_path) == []


def test_read_only_refuses_a_foreign_database_even_with_adopt(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(ForeignDatabase, match="not a quick_queue store"):
        kv.open(f"sqlite:///{path}", read_only=True, adopt=True)


def _immutable(paths: list[Path], on: bool) -> bool:
    """``chattr +i`` (or ``-i``): not even root may write, create or delete there."""
    for path in paths:
        try:
            done = subprocess.run(
                ["chattr", "+i" if on else "-i", str(path)], capture_output=True, check=False
            )
        except OSError:
            return False
        if done.returncode != 0:
            return False
    return True


def test_read_only_works_on_a_file_nobody_may_write(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "q.db"
    _store(path)
    before = _snapshot(folder)
    path.chmod(0o444)
    folder.chmod(0o555)
    if os.geteuid() == 0 and not _immutable([path, folder], True):
        pytest.skip("running as root without chattr: the file cannot be made unwritable")
    try:
        with kv.open(f"sqlite:///{path}", read_only=True) as db:
            assert db.transact(lambda tr: tr.get(b"k")) == b"v"
            assert db.store_time() > 0
    finally:
        if os.geteuid() == 0:
            _immutable([path, folder], False)
        folder.chmod(0o755)
        path.chmod(0o644)
    assert _snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["q.db"]  # nothing could be created beside it


# -- foreign files --------------------------------------------------------------------------------
def test_a_foreign_database_is_left_untouched_unless_adopted(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
        conn.execute("INSERT INTO users VALUES (1)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ForeignDatabase) as info:
        kv.open(f"sqlite:///{path}")
    message = str(info.value)
    assert str(path) in message and "users" in message and "adopt=True" in message
    assert info.value.path == str(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["app.db"]
    with kv.open(f"sqlite:///{path}", adopt=True) as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))
    with kv.open(f"sqlite:///{path}") as db:  # now it is a store: no adopt needed again
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM users").fetchall() == [(1,)]
    conn.close()


def test_an_empty_sqlite_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a valid SQLite file with no tables (zero bytes)
    with kv.open(f"sqlite:///{path}") as db:
        db.transact(lambda tr: tr.set(b"k", b"v"))


def test_a_file_that_is_not_sqlite_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a database\n" * 100)
    with pytest.raises(StorageError, match="not a SQLite database"):
        kv.open(f"sqlite:///{path}")
    assert path.read_text().startswith("hello")


# -- the store's time -----------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_store_time_is_the_injected_clock(url: str, tmp_path: Path) -> None:
    if url == "sqlite":
        url = f"sqlite:///{tmp_path}/q.db"
    clock = StepClock(1_800_000_000.0)
    with kv.open(url, clock=clock) as db:
        assert db.store_time() == 1_800_000_000.0
        clock.value += 42.5
        assert db.store_time() == 1_800_000_042.5


def test_store_time_defaults_to_the_hosts_clock(tmp_path: Path) -> None:
    import time

    with kv.open(f"sqlite:///{tmp_path}/q.db") as db:
        before = time.time()
        now = db.store_time()
        assert before - 1 <= now <= time.time() + 1


def test_the_fault_injector_forwards_the_store_time() -> None:
    from quick_queue.kv.faults import FaultyDatabase

    clock = StepClock(1_800_000_000.0)
    with FaultyDatabase(kv.open("memory://", clock=clock), seed=1) as db:
        assert db.store_time() == 1_800_000_000.0
        clock.value += 1
        assert db.store_time() == 1_800_000_001.0


def test_url_mistakes_are_configuration_errors_under_the_one_root() -> None:
    from quick_queue.kv.errors import ConfigurationError, QuickQueueError

    for url in ("queue.db", "sqlite:/x.db", "memory://x", "nosuch://"):
        with pytest.raises(ConfigurationError) as info:
            kv.open(url)
        assert isinstance(info.value, QuickQueueError) and isinstance(info.value, ValueError)
