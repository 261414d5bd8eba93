"""The embedded engine's cost per commit (issue 10): the SQL statements a commit issues, and
that a group-commit batch written with one ``executemany`` per kind of row leaves exactly what
committing its requests one after another leaves."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KVError
from quick_queue.kv.sqlite_commit import Request
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_transaction import SQLiteTransaction
from tests.kv.sqlite_store import statements_of

Step = Callable[[Transaction], object]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(str(tmp_path / "kv.db"))
    yield database
    database.close()


def one(n: int) -> bytes:
    return struct.pack("<q", n)


def kinds(seen: list[str]) -> list[str]:
    """Each statement's text up to its first parameter (an executemany traces every row)."""
    out: list[str] = []
    for text in seen:
        kind = text.split(" (")[0].split(" WHERE")[0]
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def test_a_commit_of_one_transaction_runs_these_statements(db: SQLiteDatabase) -> None:
    db.transact(lambda tr: [tr.set(b"gone%d" % i, b"x") for i in range(3)])

    def step(tr: Transaction) -> None:
        for i in range(3):
            tr.set(b"k%d" % i, b"v")
            tr.clear(b"gone%d" % i)
            tr.add(b"n%d" % i, one(1))

    # the conflict log's row carries the new database version, so every commit writes it;
    # the three counters' stored values are read in one query, the rows set in one statement
    seen = statements_of(db, step)
    assert kinds(seen) == [
        "BEGIN IMMEDIATE", "PRAGMA data_version", "WITH wanted(k) AS", "DELETE FROM kv",
        "INSERT OR REPLACE INTO kv", "INSERT INTO qq_log", "COMMIT",
    ]
    assert len([s for s in seen if s.startswith("INSERT OR REPLACE")]) == 1
    # the next commit adding to the same counters knows their values: it reads nothing
    assert kinds(statements_of(db, step)) == [
        "BEGIN IMMEDIATE", "PRAGMA data_version", "DELETE FROM kv", "INSERT OR REPLACE INTO kv",
        "INSERT INTO qq_log", "COMMIT",
    ]
    assert dict(db.transact(lambda tr: tr.get_range(b"n", b"o"))) == {
        b"n%d" % i: one(2) for i in range(3)
    }


def test_a_transaction_takes_its_snapshot_with_its_first_read(db: SQLiteDatabase) -> None:
    db.transact(lambda tr: tr.set(b"k", b"v"))
    tr = db.create_transaction()
    seen: list[str] = []
    conn = db._begin_read()[0]  # the pooled connection the transaction will use
    db._end_read(conn)
    conn.connection.set_trace_callback(seen.append)
    try:
        assert tr.get(b"k") == b"v"
        assert tr.get_read_version() == db.transact(lambda t: t.get_read_version())
        # one statement takes the version and the value; nothing more for the read version
        assert seen == [
            "BEGIN",
            "SELECT (SELECT max(version) FROM qq_log), (SELECT v FROM kv WHERE k = x'6b')",
        ]
    finally:
        conn.connection.set_trace_callback(None)
        tr.reset()


def test_the_atomic_values_kept_are_dropped_when_another_handle_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    first, second = SQLiteDatabase(path), SQLiteDatabase(path)
    try:
        first.transact(lambda tr: tr.add(b"n", one(1)))  # first now knows n = 1
        second.transact(lambda tr: tr.add(b"n", one(10)))  # another connection: n = 11
        seen = statements_of(first, lambda tr: tr.add(b"n", one(100)))
        assert "SELECT v FROM kv" in kinds(seen)  # the kept value was not trusted
        assert first.transact(lambda tr: tr.get(b"n")) == one(111)
        second.transact(lambda tr: tr.set(b"n", one(5)))
        first.transact(lambda tr: tr.add(b"n", one(1)))
        assert second.transact(lambda tr: tr.get(b"n")) == one(6)
    finally:
        first.close()
        second.close()


def test_the_atomic_values_kept_are_dropped_when_a_batch_fails(db: SQLiteDatabase) -> None:
    db.transact(lambda tr: tr.add(b"n", one(1)))
    # A log row at the next version, written on the writer's own connection (so the batch
    # below still trusts its kept values): the batch's log insert fails after its rows.
    taken = db._seen + 1
    db._writer.execute("INSERT INTO qq_log (version, at, ranges) VALUES (?, 0, X'')", (taken,))
    with pytest.raises(KVError):
        db.transact(lambda tr: tr.add(b"n", one(10)))
    assert db._values == {}
    db._writer.execute("DELETE FROM qq_log WHERE version = ?", (taken,))
    assert db.transact(lambda t: t.get(b"n")) == one(1)
    db.transact(lambda t: t.add(b"n", one(1)))
    assert db.transact(lambda t: t.get(b"n")) == one(2)


def test_a_batch_of_transactions_reads_its_counters_in_one_query(db: SQLiteDatabase) -> None:
    db.transact(lambda tr: [tr.set(b"n%d" % i, one(5)) for i in range(3)])
    requests = []
    for _ in range(4):  # four committers adding to the same counters, as settles do
        tr = db.create_transaction()
        for i in range(4):
            tr.add(b"n%d" % i, one(2))
        requests.append(request_of(tr))
    seen: list[str] = []
    db._writer.set_trace_callback(seen.append)
    try:
        db._run_batch(requests)  # what the group commit's leader does with a batch
    finally:
        db._writer.set_trace_callback(None)
    assert all(r.done and r.error is None for r in requests)
    assert kinds(seen) == [
        "BEGIN IMMEDIATE", "PRAGMA data_version", "WITH wanted(k) AS",
        "INSERT OR REPLACE INTO kv", "INSERT INTO qq_log", "COMMIT",
    ]
    assert len([s for s in seen if s.startswith("WITH wanted")]) == 1  # (the keys' read)
    assert db.transact(lambda tr: tr.get_range(b"n", b"o")) == [
        (b"n0", one(13)), (b"n1", one(13)), (b"n2", one(13)), (b"n3", one(8))
    ]


def request_of(tr: SQLiteTransaction) -> Request:
    return Request(None, set(), [], tr._writes, tr._cleared, tr._stamped_keys, tr._extra_writes)


def final_state(db: SQLiteDatabase) -> dict[bytes, bytes]:
    rows = db.transact(lambda tr: tr.get_range(b"", b"\xff"))
    return dict(rows)


BATCH: list[Step] = [
    lambda tr: (tr.set(b"a", one(1)), tr.set(b"c", b"x"), tr.add(b"s", one(1))),
    lambda tr: (tr.add(b"a", one(2)), tr.clear(b"c"), tr.add(b"s", one(10))),
    lambda tr: (tr.add(b"c", one(3)), tr.clear_range(b"a", b"b"), tr.max(b"s", one(4))),
    lambda tr: (tr.add(b"a", one(4)), tr.min(b"m", one(9)), tr.set(b"z", b"last")),
    lambda tr: tr.set_versionstamped_key(b"vs" + b"\x00" * 10 + struct.pack("<I", 2), b"k"),
]


def test_a_batch_leaves_what_its_requests_leave_one_by_one(tmp_path: Path) -> None:
    seed: Step = lambda tr: (tr.set(b"s", one(100)), tr.set(b"m", one(3)))  # noqa: E731
    one_by_one = SQLiteDatabase(str(tmp_path / "seq.db"))
    batched = SQLiteDatabase(str(tmp_path / "batch.db"))
    try:
        one_by_one.transact(seed)
        batched.transact(seed)
        for step in BATCH:
            one_by_one.transact(step)
        requests = []
        for step in BATCH:
            tr = batched.create_transaction()
            step(tr)
            requests.append(request_of(tr))
        batched._run_batch(requests)  # what the group commit's leader does with a batch
        assert all(r.done and r.error is None for r in requests)
        expected, got = final_state(one_by_one), final_state(batched)
        # the versionstamped key differs (another commit version): compare its shape
        assert {k for k in got if not k.startswith(b"vs")} == {
            k for k in expected if not k.startswith(b"vs")
        }
        assert {k: v for k, v in got.items() if not k.startswith(b"vs")} == {
            k: v for k, v in expected.items() if not k.startswith(b"vs")
        }
        assert len([k for k in got if k.startswith(b"vs")]) == 1
        assert got[b"a"] == one(4) and b"c" in got and got[b"s"] == one(111)
    finally:
        one_by_one.close()
        batched.close()


@pytest.mark.parametrize("count", [1, 16, 17, 28, 50, 64, 96, 200, 700])
def test_rows_are_written_and_cleared_in_the_fewest_statements_and_exactly(
    db: SQLiteDatabase, count: int
) -> None:
    # A dequeue of 32 jobs sets 64 rows, a settle of 32 clears 64 keys: one statement each.
    # A delete's keys are padded with a repeated key up to 12 more (nothing else may go,
    # nothing may stay), else split (sqlite_commit.MAX_PADDING).
    keep = [b"keep/%04d" % i for i in range(5)]
    keys = [b"row/%04d" % i for i in range(count)]
    db.transact(lambda tr: [tr.set(k, b"k") for k in keep])
    seen = statements_of(db, lambda tr: [tr.set(k, b"v" + k) for k in keys])
    inserts = [s for s in seen if s.startswith("INSERT OR REPLACE")]
    # 17 = 16 + 1, 50 = 32 + 16 + 2, 200 = 128 + 64 + 8, 700 = 5 x 128 + 32 + 16 + 12
    expected_inserts = {1: 1, 16: 1, 17: 2, 28: 2, 50: 3, 64: 1, 96: 2, 200: 3, 700: 8}[count]
    assert len(inserts) == expected_inserts
    stored = db.transact(lambda tr: tr.get_range(b"row/", b"row0"))
    assert stored == [(k, b"v" + k) for k in keys]

    seen = statements_of(db, lambda tr: [tr.clear(k) for k in keys])
    deletes = [s for s in seen if s.startswith("DELETE FROM kv")]
    # 17 = 16 + 1, 28 padded to 32, 50 = 32 + 16 + 2, 96 = 64 + 32, 200 = 128 + 64 + 8,
    # 700 = 512 + 128 + 60 padded to 64
    expected_deletes = {1: 1, 16: 1, 17: 2, 28: 1, 50: 3, 64: 1, 96: 2, 200: 3, 700: 3}[count]
    assert len(deletes) == expected_deletes
    assert db.transact(lambda tr: tr.get_range(b"row/", b"row0")) == []
    assert db.transact(lambda tr: tr.get_range(b"keep/", b"keep0")) == [(k, b"k") for k in keep]
