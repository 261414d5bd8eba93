"""The key-value layer's error tree and its classification of FoundationDB's codes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.errors import (
    ClientLibraryMissing,
    KVError,
    QuickQueueError,
    StorageError,
    is_retryable,
    is_transient,
)
from quick_queue.kv.sqlite_engine import SQLiteDatabase


def test_every_kv_error_is_a_quick_queue_error() -> None:
    assert issubclass(KVError, QuickQueueError)
    assert issubclass(StorageError, QuickQueueError)
    assert issubclass(ClientLibraryMissing, QuickQueueError)
    assert kv.QuickQueueError is QuickQueueError
    try:
        raise StorageError(1510, "disk full", path="/x.db")
    except QuickQueueError as caught:  # one root to catch
        assert isinstance(caught, StorageError) and caught.path == "/x.db"


def test_kv_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(StorageError(1510, "disk full", path="/x.db")))
    assert (type(error), error.code, error.path) == (StorageError, 1510, "/x.db")


def test_a_full_disk_is_a_transient_storage_error_and_the_file_stays_usable(
    tmp_path: Path,
) -> None:
    db = SQLiteDatabase(str(tmp_path / "full.db"))
    try:
        pages = db._writer.execute("PRAGMA page_count").fetchone()[0]
        db._writer.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "disk full"
        with pytest.raises(StorageError) as info:
            db.transact(lambda tr: [tr.set(b"k%03d" % i, b"v" * 50_000) for i in range(20)])
        assert "disk is full" in str(info.value)
        assert is_transient(info.value) and not is_retryable(info.value)
        db._writer.execute("PRAGMA max_page_count = 1073741823")  # space comes back
        db.transact(lambda tr: tr.set(b"k", b"v"))
        assert db.transact(lambda tr: tr.get(b"k")) == b"v"
    finally:
        db.close()


def test_other_storage_errors_are_not_transient() -> None:
    assert not is_transient(StorageError(1516, "read-only", path="/x.db"))
    assert is_transient(StorageError(1510, "disk full", path="/x.db", transient=True))
