"""A writer that has been alone on its file for a while (``QUIET_BATCHES`` batches that found no
other connection's commit) stops asking SQLite before each batch (``PRAGMA data_version``) and
lets the conflict log's row tell (issue 10: a statement fewer per commit). These tests hold it
to what the question guarded: another handle's or process's commit in between is still seen by
the conflict check, the versionstamps and the atomic operations of the next batch, and the
question comes back once another connection is seen committing."""

from __future__ import annotations

import multiprocessing
import struct
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import NOT_COMMITTED, KVError
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_group_commit import QUIET_BATCHES
from tests.kv import sqlite_store

path = sqlite_store.path
put = sqlite_store.put
quieten = sqlite_store.quieten
traced = sqlite_store.traced

CTX = multiprocessing.get_context("spawn")
PLACEHOLDER = b"\x00" * 10


def one(n: int) -> bytes:
    return struct.pack("<q", n)


@pytest.fixture
def handles(path: str) -> Iterator[tuple[SQLiteDatabase, SQLiteDatabase]]:
    """Two handles on one file (two processes share nothing more); the second one quiet."""
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:
        put(a, b"seed", b"x")
        quieten(b)
        yield a, b


def write_after_a_read(b: SQLiteDatabase, a: SQLiteDatabase, other: bytes) -> Transaction:
    """A transaction of ``b`` that read ``seed`` and then set ``elsewhere``, with ``a``'s
    commit of ``other`` in between (the key it read, or another)."""
    tr = b.create_transaction()
    assert tr.get(b"seed") == b"x"
    put(a, other, b"y")
    tr.set(b"elsewhere", b"1")
    return tr


def test_a_writer_alone_commits_in_four_statements(path: str) -> None:
    with closing(SQLiteDatabase(path)) as db:
        put(db, b"k", b"v")  # (the first commit reads the log)
        assert traced(db, lambda tr: tr.set(b"k", b"v")) == [
            "BEGIN IMMEDIATE", "PRAGMA data_version", "INSERT OR REPLACE INTO kv",
            "INSERT INTO qq_log", "COMMIT",
        ]
        for _ in range(QUIET_BATCHES - 1):
            put(db, b"k", b"v")
        assert traced(db, lambda tr: tr.set(b"k", b"w")) == [
            "BEGIN IMMEDIATE", "INSERT OR REPLACE INTO kv", "INSERT INTO qq_log", "COMMIT"
        ]
        assert db.transact(lambda tr: tr.get(b"k")) == b"w"


def test_another_handles_commit_is_a_conflict_and_the_batch_is_made_again(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles
    tr = write_after_a_read(b, a, b"seed")
    seen: list[str] = []
    b._writer.set_trace_callback(seen.append)
    try:
        with pytest.raises(KVError) as caught:
            tr.commit()
    finally:
        b._writer.set_trace_callback(None)
    assert caught.value.code == NOT_COMMITTED
    # undone when the log's row showed the other commit, then resolved after reading the log
    assert [s.split(" ")[0] for s in seen] == [
        "BEGIN", "INSERT", "INSERT", "ROLLBACK", "BEGIN", "PRAGMA", "SELECT", "ROLLBACK"
    ]
    assert b.transact(lambda t: t.get(b"elsewhere")) is None
    # and asks again before the next batches, until it has been alone for a while
    assert "PRAGMA data_version" in traced(b, lambda t: t.set(b"next", b"1"))


def test_a_read_that_finds_another_commit_makes_the_next_batch_ask(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    """The read cache's check of ``PRAGMA data_version`` saw it first: the next batch reads the
    log before it resolves instead of finding out at its log row and making the batch again."""
    a, b = handles
    b.transact(lambda tr: tr.get(b"seed"))  # kept by b's read cache
    quieten(b)
    put(a, b"other", b"y")
    assert b.transact(lambda tr: tr.get(b"seed")) == b"x"  # not served: a snapshot
    assert traced(b, lambda tr: tr.set(b"next", b"1")) == [
        "BEGIN IMMEDIATE", "PRAGMA data_version", "SELECT version, at, ranges FROM qq_log",
        "INSERT OR REPLACE INTO kv", "INSERT INTO qq_log", "COMMIT",
    ]


def test_a_read_of_what_another_handle_did_not_write_commits(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles
    tr = write_after_a_read(b, a, b"other")
    tr.commit()
    assert a.transact(lambda t: (t.get(b"elsewhere"), t.get(b"other"))) == (b"1", b"y")


def test_versionstamps_follow_another_handles_commit(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles

    def stamp(tr: Transaction) -> object:
        tr.set_versionstamped_key(b"vs/" + PLACEHOLDER + struct.pack("<I", 3), b"v")
        return tr.get_versionstamp()

    before = b.transact(stamp).wait()  # type: ignore[attr-defined]
    quieten(b)
    put(a, b"other", b"y")
    after = b.transact(stamp).wait()  # type: ignore[attr-defined]
    version = int.from_bytes(after[:8], "big")
    assert version == a._seen + 1 == b._seen  # after the other handle's commit, not at it
    rows = b.transact(lambda tr: tr.get_range(b"vs/", b"vs0"))
    assert [k[3:] for k, _ in rows] == [before, after]


def test_a_versionstamped_value_made_again_holds_the_new_version(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    # (its rows are bound before the write turn, its stamp placed at each making)
    a, b = handles
    quieten(b)
    put(a, b"other", b"y")

    def stamp(tr: Transaction) -> object:
        tr.set(b"plain", b"p")
        tr.set_versionstamped_value(b"vv", PLACEHOLDER + struct.pack("<I", 0))
        return tr.get_versionstamp()

    stamped = b.transact(stamp).wait()  # type: ignore[attr-defined]
    assert int.from_bytes(stamped[:8], "big") == a._seen + 1 == b._seen
    assert b.transact(lambda tr: tr.get(b"vv")) == stamped
    assert b.transact(lambda tr: tr.get(b"plain")) == b"p"


def test_atomic_values_kept_by_a_quiet_writer_see_another_handles_add(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles
    b.transact(lambda tr: tr.add(b"n", one(1)))  # b now keeps n = 1
    quieten(b)
    a.transact(lambda tr: tr.add(b"n", one(10)))
    b.transact(lambda tr: tr.add(b"n", one(100)))
    assert a.transact(lambda tr: tr.get(b"n")) == one(111)


def _write_seed(path: str) -> None:
    with closing(SQLiteDatabase(path)) as db:
        db.transact(lambda tr: (tr.set(b"seed", b"z"), tr.add(b"n", one(10))))


@pytest.mark.slow
def test_another_process_commit_is_seen_by_a_quiet_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    with closing(SQLiteDatabase(path)) as db:
        put(db, b"seed", b"x")
        db.transact(lambda tr: tr.add(b"n", one(1)))
        quieten(db)
        tr = db.create_transaction()
        assert tr.get(b"seed") == b"x"
        child = CTX.Process(target=_write_seed, args=(path,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        tr.set(b"elsewhere", b"1")
        with pytest.raises(KVError) as caught:
            tr.commit()
        assert caught.value.code == NOT_COMMITTED
        quieten(db)
        child = CTX.Process(target=_write_seed, args=(path,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        db.transact(lambda tr: tr.add(b"n", one(100)))
        assert db.transact(lambda tr: (tr.get(b"seed"), tr.get(b"n"))) == (b"z", one(121))
