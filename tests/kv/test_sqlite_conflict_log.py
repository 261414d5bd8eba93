"""The embedded engine's conflict log (``qq_log``) between handles on one file: every kind of
write another process commits reaches a reader's conflict check through the log row alone (two
``SQLiteDatabase`` handles share nothing in memory), rows written by an older quick_queue (pairs)
are still read, and a batch of enqueue_many size round-trips in a row that stores each key once."""

from __future__ import annotations

import marshal
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest

from quick_queue.kv.api import Transaction
from quick_queue.kv.conflicts import WriteSet, decode_writes, encode_writes
from quick_queue.kv.errors import IO_ERROR, NOT_COMMITTED, KVError, StorageError
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from tests.kv import sqlite_store

path = sqlite_store.path
put = sqlite_store.put

PLACEHOLDER = b"\x00" * 10


@pytest.fixture
def handles(path: str) -> Iterator[tuple[SQLiteDatabase, SQLiteDatabase]]:
    """Two handles on one file: what two processes attached to it have."""
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:
        put(a, b"seed", b"x")
        yield a, b


def commit_after(
    reader: SQLiteDatabase, read: Callable[[Transaction], object], write: Callable[[], None]
) -> KVError | None:
    """``reader`` reads, then ``write`` commits elsewhere, then ``reader`` writes an unrelated key
    and commits: the error of that commit, if any."""
    tr = reader.create_transaction()
    tr.get_read_version()  # pinned now, before the other commit
    read(tr)
    write()
    tr.set(b"unrelated", b"1")
    try:
        tr.commit()
    except KVError as error:
        return error
    return None


def check(error: KVError | None, conflicts: bool) -> None:
    if conflicts:
        assert error is not None and error.code == NOT_COMMITTED, error
    else:
        assert error is None, error


def read_key(key: bytes) -> Callable[[Transaction], object]:
    return lambda tr: tr.get(key)


def read_range(begin: bytes, end: bytes) -> Callable[[Transaction], object]:
    return lambda tr: tr.get_range(begin, end)


def by(db: SQLiteDatabase, change: Callable[[Transaction], None]) -> Callable[[], None]:
    return lambda: db.transact(change)


# -- each kind of write, seen by the other handle through the log ---------------------------------
def _declare(tr: Transaction) -> None:
    tr.add_write_conflict_range(b"w/a", b"w/l")
    tr.set(b"elsewhere", b"1")


def _stamp(tr: Transaction) -> None:
    tr.set_versionstamped_key(b"vs/" + PLACEHOLDER + struct.pack("<I", 3), b"v")


WRITES: dict[str, Callable[[Transaction], None]] = {
    "point-write": lambda tr: tr.set(b"p/2", b"v"),
    "range-clear": lambda tr: tr.clear_range(b"r/a", b"r/z"),
    "write-conflict-range": _declare,
    "versionstamped-key": _stamp,
}


@pytest.mark.parametrize(
    ("write", "read", "conflicts"),
    [
        ("point-write", read_key(b"p/2"), True),
        ("point-write", read_range(b"p/", b"p0"), True),
        ("point-write", read_key(b"p/3"), False),
        ("point-write", read_range(b"p/3", b"p0"), False),
        ("range-clear", read_key(b"r/m"), True),
        ("range-clear", read_range(b"r/", b"r/b"), True),
        ("range-clear", read_range(b"r/y", b"s"), True),
        ("range-clear", read_key(b"r/z"), False),
        ("range-clear", read_range(b"a", b"r/a"), False),
        ("write-conflict-range", read_key(b"w/k"), True),
        ("write-conflict-range", read_key(b"w/l"), False),
        ("versionstamped-key", read_range(b"vs/", b"vs0"), True),
        ("versionstamped-key", read_range(b"vt/", b"vt0"), False),
    ],
    ids=[
        "point-write-key", "point-write-range", "point-write-other-key",
        "point-write-range-after",
        "range-clear-key-inside", "range-clear-range-at-start", "range-clear-range-at-end",
        "range-clear-key-at-end", "range-clear-range-before",
        "write-conflict-range-key-inside", "write-conflict-range-key-at-end",
        "versionstamped-key-its-range", "versionstamped-key-another-range",
    ],
)
@pytest.mark.parametrize("quiet", [False, True], ids=["asking", "quiet"])
def test_each_kind_of_write_reaches_the_other_handles_conflict_check(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
    write: str, read: Callable[[Transaction], object], conflicts: bool, quiet: bool,
) -> None:
    """``quiet``: the reader's writer no longer asks whether another connection committed
    (``sqlite_group_commit.QUIET_BATCHES``): the log's row of its commit tells it."""
    a, b = handles
    if quiet:
        sqlite_store.quieten(b)
    error = commit_after(b, read, by(a, WRITES[write]))
    check(error, conflicts)


def test_a_batch_of_enqueue_many_size(handles: tuple[SQLiteDatabase, SQLiteDatabase]) -> None:
    """2,000 keys of 64 bytes sharing a long prefix: the last key, and a range holding only the
    first, each still conflict; the row stores each key once (the old rows twice)."""
    a, b = handles
    prefix = b"\x02qq\x00\x02default\x00\x02z\x00\x02default\x00\x02i\x00\x02"
    keys = [prefix + b"%024d\x00" % i for i in range(2000)]

    def many(tr: Transaction) -> None:
        for key in keys:
            tr.set(key, b"v")

    for read in (read_key(keys[-1]), read_range(keys[0], keys[0] + b"\x00")):
        error = commit_after(b, read, by(a, many))
        assert error is not None and error.code == NOT_COMMITTED
    (size,) = a._writer.execute(
        "SELECT length(ranges) FROM qq_log ORDER BY version DESC LIMIT 1"
    ).fetchone()
    key_bytes = sum(map(len, keys))
    assert key_bytes < size < key_bytes * 1.1


# -- the row format -------------------------------------------------------------------------------
def insert_row(path: str, blob: bytes) -> None:
    """Commit a log row as another process would: the next version, stamped now."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        (version,) = conn.execute("SELECT max(version) FROM qq_log").fetchone()
        conn.execute("INSERT INTO qq_log VALUES (?, ?, ?)", (version + 1, time.time(), blob))
        conn.execute("COMMIT")


OLD_PAIRS = [(b"old/k", b"old/k\x00"), (b"old/r/a", b"old/r/m")]
# What an older quick_queue wrote: marshal of the pairs; its first byte is "[" or, with
# marshal's reference flag, 0xDB.
OLD_ROWS = [marshal.dumps([(b"old/k", b"old/k\x00"), (b"old/r/a", b"old/r/m")]),
            marshal.dumps(OLD_PAIRS)]


@pytest.mark.parametrize("blob", OLD_ROWS, ids=["list", "list-with-reference-flag"])
@pytest.mark.parametrize(
    ("read", "conflicts"),
    [(read_key(b"old/k"), True), (read_key(b"old/r/b"), True), (read_key(b"old/r/m"), False)],
    ids=["point", "in-range", "range-end"],
)
def test_a_row_of_the_old_format_is_read(
    handles: tuple[SQLiteDatabase, SQLiteDatabase], path: str, blob: bytes,
    read: Callable[[Transaction], object], conflicts: bool,
) -> None:
    _, b = handles
    error = commit_after(b, read, lambda: insert_row(path, blob))
    check(error, conflicts)


def test_a_row_of_an_unknown_format_fails_the_commit_instead_of_missing_a_conflict(
    handles: tuple[SQLiteDatabase, SQLiteDatabase], path: str
) -> None:
    _, b = handles
    insert_row(path, b"\x07" + marshal.dumps(([b"k"], []), 2))
    with pytest.raises(StorageError) as info:
        put(b, b"k", b"v")
    assert info.value.code == IO_ERROR
    assert "cannot read" in str(info.value)


def test_rows_round_trip_and_the_formats_differ_in_their_first_byte() -> None:
    writes = WriteSet()
    for i in range(2000):
        writes.add(b"pt/%05d" % i, b"pt/%05d\x00" % i)
    writes.add(b"ra/a", b"ra/q")
    writes.add(b"rb/", b"rb0")
    blob = encode_writes(writes)
    decoded = decode_writes(blob)
    assert decoded.points == writes.points and decoded.ranges == writes.ranges
    assert blob[0] not in b"[\xdb"
    assert OLD_ROWS[0][0] == ord("[") and OLD_ROWS[1][0] == 0xDB
    old = decode_writes(OLD_ROWS[0])
    assert old.points == {b"old/k"} and old.ranges == [(b"old/r/a", b"old/r/m")]
    assert not decode_writes(b"")


def test_a_commit_after_another_handles_reads_the_log_in_one_query(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    """Its rows give the database version too (the newest row is never pruned): no second query
    of max(version)."""
    a, b = handles
    put(a, b"k", b"1")
    before = b._seen
    seen: list[str] = []
    b._writer.set_trace_callback(seen.append)
    try:
        put(b, b"j", b"1")
    finally:
        b._writer.set_trace_callback(None)
    assert [s for s in seen if s.startswith("SELECT")] == [
        f"SELECT version, at, ranges FROM qq_log WHERE version > {before} ORDER BY version"
    ]
    assert b._seen == a._seen + 1
    put(a, b"k", b"2")
    put(a, b"k", b"3")
    put(b, b"j", b"2")  # mirrors two rows
    assert b._seen == a._seen + 1
