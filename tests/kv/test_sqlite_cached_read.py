"""The embedded engine's read cache (``kv/sqlite_read_cache.py``): a transaction's first point
read served without a snapshot when the value is provably the latest, and every semantic of a
snapshot read kept (conflicts, one consistent version per transaction, 1007, other handles'
commits seen at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from quick_queue.kv import api
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import NOT_COMMITTED, TRANSACTION_TOO_OLD, KVError
from quick_queue.kv.sqlite_engine import SQLiteDatabase
from quick_queue.kv.sqlite_read_cache import ENTRIES, VALUE_BYTES
from quick_queue.kv.sqlite_transaction import SQLiteTransaction
from tests.kv import sqlite_store

# The store fixtures and helper shared with the other engine tests (tests/kv/sqlite_store.py).
path = sqlite_store.path
db = sqlite_store.db
put = sqlite_store.put


def warm(db: SQLiteDatabase, key: bytes) -> None:
    """A read-write transaction whose first read is ``key``: the cache keeps its value."""

    def touch(tr: Transaction) -> None:
        tr.get(key)
        tr.set(b"other", b"x")

    db.transact(touch)


def served(db: SQLiteDatabase, key: bytes) -> tuple[SQLiteTransaction, bytes | None]:
    tr = db.create_transaction()
    value = tr.get(key)
    assert tr._conn is None, "expected the read to be served from the cache"
    return tr, value


def test_a_first_read_of_a_known_key_takes_no_snapshot(db: SQLiteDatabase) -> None:
    put(db, b"marker", b"1")
    warm(db, b"marker")
    tr, value = served(db, b"marker")
    assert value == b"1"
    assert tr._read_version == db._seen  # the latest version: as fresh as a snapshot
    tr.set(b"job", b"j")
    tr.commit()
    assert db.transact(lambda t: t.get(b"job")) == b"j"


def test_absence_is_cached_and_a_commit_updates_the_cached_value(db: SQLiteDatabase) -> None:
    warm(db, b"marker")
    assert served(db, b"marker")[1] is None
    put(db, b"marker", b"2")  # this process's commit: the cache takes the new value
    assert served(db, b"marker")[1] == b"2"
    db.transact(lambda tr: tr.clear(b"marker"))
    assert served(db, b"marker")[1] is None


def test_atomic_operations_drop_the_key_and_reads_see_their_result(db: SQLiteDatabase) -> None:
    warm(db, b"n")
    db.transact(lambda tr: tr.add(b"n", (5).to_bytes(8, "little")))
    tr = db.create_transaction()
    assert tr.get(b"n") == (5).to_bytes(8, "little")
    assert tr._conn is not None  # not guessed from the cache: read from the store


def test_a_write_between_the_read_and_the_commit_conflicts_and_the_retry_sees_it(
    db: SQLiteDatabase,
) -> None:
    put(db, b"k", b"old")
    warm(db, b"k")
    tr, value = served(db, b"k")
    assert value == b"old"
    put(db, b"k", b"new")
    tr.set(b"k2", value or b"")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED
    seen: list[bytes | None] = []

    def again(t: Transaction) -> None:
        seen.append(t.get(b"k"))
        t.set(b"k2", seen[-1] or b"")

    db.transact(again)
    assert seen == [b"new"]


def test_another_handles_commit_is_seen_by_the_next_transaction(path: str) -> None:
    a, b = SQLiteDatabase(path), SQLiteDatabase(path)
    try:
        put(a, b"k", b"1")
        warm(a, b"k")
        assert served(a, b"k")[1] == b"1"
        put(b, b"k", b"2")  # acknowledged: every later transaction must see it
        tr = a.create_transaction()
        assert tr.get(b"k") == b"2"
        assert tr._conn is not None  # the other handle's commit: the cache was not trusted
        warm(a, b"k")  # a's next batch mirrors b's commit; the cache is trusted again
        warm(a, b"k")  # ... and its next first read of k is cached
        assert served(a, b"k")[1] == b"2"
    finally:
        a.close()
        b.close()


def test_another_handles_range_clear_empties_what_it_covers(path: str) -> None:
    a, b = SQLiteDatabase(path), SQLiteDatabase(path)
    try:
        put(a, b"r/1", b"1")
        warm(a, b"r/1")
        assert served(a, b"r/1")[1] == b"1"
        b.transact(lambda tr: tr.clear_range(b"r/", b"r0"))
        warm(a, b"x")  # a's batch mirrors b's range clear: the cached value must go
        tr = a.create_transaction()
        assert tr.get(b"r/1") is None
    finally:
        a.close()
        b.close()


def test_two_handles_incrementing_by_read_modify_write_end_with_the_exact_total(
    path: str,
) -> None:
    handles = [SQLiteDatabase(path), SQLiteDatabase(path)]
    rounds = 150

    def increment(tr: Transaction) -> None:
        tr.set(b"n", b"%d" % (int(tr.get(b"n") or b"0") + 1))

    def work(db: SQLiteDatabase) -> None:
        for _ in range(rounds):
            db.transact(increment)

    try:
        threads = [threading.Thread(target=work, args=(db,)) for db in handles * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handles[0].transact(lambda tr: tr.get(b"n")) == b"%d" % (4 * rounds)
    finally:
        for db in handles:
            db.close()


def test_a_snapshot_taken_after_a_served_read_moves_the_read_version(db: SQLiteDatabase) -> None:
    put(db, b"k", b"1")
    warm(db, b"k")
    tr, _ = served(db, b"k")
    first = tr._read_version
    put(db, b"unrelated", b"u")  # a commit after the served read, to another key
    assert tr.get_range(b"u", b"v") == [(b"unrelated", b"u")]  # one snapshot, the newer one
    assert first is not None and tr.get_read_version() > first
    tr.set(b"k", b"2")
    tr.commit()  # no conflict: nothing it read changed since the snapshot it now reads at
    assert db.transact(lambda t: t.get(b"k")) == b"2"


def test_a_served_value_never_meets_a_snapshot_that_contradicts_it(db: SQLiteDatabase) -> None:
    for key in (b"k1", b"k2", b"k3"):
        put(db, key, b"1")
        warm(db, key)
    tr, value = served(db, b"k1")
    assert value == b"1"
    put(db, b"k1", b"2")
    with pytest.raises(KVError) as info:  # a range read would show k1 = 2 beside k1 = 1
        tr.get_range(b"a", b"z")
    assert info.value.code == NOT_COMMITTED
    tr2, _ = served(db, b"k2")
    put(db, b"k2", b"2")
    with pytest.raises(KVError) as info:
        tr2.snapshot.get(b"other")
    assert info.value.code == NOT_COMMITTED
    calls: list[bytes | None] = []

    def reader(t: Transaction) -> list[tuple[bytes, bytes]]:
        calls.append(t.get(b"k3"))
        if len(calls) == 1:
            put(db, b"k3", b"4")  # between the served read and the range read
        return t.get_range(b"k3", b"k4")

    assert db.transact(reader) == [(b"k3", b"4")]
    assert calls == [b"1", b"4"]


def test_a_key_read_before_a_snapshot_is_not_cached_again(db: SQLiteDatabase) -> None:
    put(db, b"pointer", b"p")
    warm(db, b"pointer")
    tr, _ = served(db, b"pointer")
    tr.get_range(b"a", b"z")  # this key's readers go on to take a snapshot
    assert b"pointer" in db._read_cache.bound
    warm(db, b"pointer")
    tr = db.create_transaction()
    assert tr.get(b"pointer") == b"p"
    assert tr._conn is not None


def test_only_a_transaction_that_read_one_key_fills_the_cache(db: SQLiteDatabase) -> None:
    put(db, b"pointer", b"p")

    def consumer(tr: Transaction) -> None:  # a first point read, then a range read
        tr.get(b"pointer")
        tr.get_range(b"a", b"z")
        tr.set(b"lease", b"l")

    db.transact(consumer)
    assert b"pointer" not in db._read_cache.values
    warm(db, b"pointer")  # the enqueue's shape: one read, then writes
    assert db._read_cache.values[b"pointer"] == b"p"


def test_snapshot_reads_are_not_served(db: SQLiteDatabase) -> None:
    put(db, b"k", b"1")
    warm(db, b"k")
    tr = db.create_transaction()
    assert tr.snapshot.get(b"k") == b"1"
    assert tr._conn is not None


def test_two_served_reads_share_one_version(db: SQLiteDatabase) -> None:
    put(db, b"a", b"1")
    put(db, b"b", b"2")
    warm(db, b"a")
    warm(db, b"b")
    tr, _ = served(db, b"a")
    assert tr.get(b"b") == b"2"
    assert tr._conn is None
    assert tr.get_many([b"a", b"b", b"c"]) == [b"1", b"2", None]  # a snapshot: both checked


def test_a_served_transaction_gets_1007_after_five_seconds(db: SQLiteDatabase) -> None:
    put(db, b"k", b"1")
    warm(db, b"k")
    tr, _ = served(db, b"k")
    tr.set(b"k", b"late")
    tr._read_at -= 6
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == TRANSACTION_TOO_OLD
    tr2, _ = served(db, b"k")
    tr2._read_at -= 6
    with pytest.raises(KVError) as info:
        tr2.get_range(b"a", b"z")
    assert info.value.code == TRANSACTION_TOO_OLD
    assert db.transact(lambda t: t.get(b"k")) == b"1"


def test_no_read_is_served_while_a_batch_holds_the_cache(db: SQLiteDatabase) -> None:
    put(db, b"k", b"1")
    warm(db, b"k")
    with db._read_cache.lock:  # what a commit in progress holds
        tr = db.create_transaction()
        assert tr.get(b"k") == b"1"
        assert tr._conn is not None


def test_get_before_write_is_served_while_a_batch_holds_the_cache(db: SQLiteDatabase) -> None:
    """Its value need not be current (the commit proves it): producer threads are served while
    another thread's batch is committing, instead of each taking a snapshot meanwhile."""
    put(db, b"k", b"1")
    warm(db, b"k")
    with db._read_cache.lock:  # what a commit in progress holds
        tr = db.create_transaction()
        assert tr.get_before_write(b"k") == b"1"
        assert tr._conn is None
    tr.set(b"job", b"j")
    tr.commit()
    assert db.transact(lambda t: t.get(b"job")) == b"j"


def test_the_cache_is_bounded(db: SQLiteDatabase) -> None:
    big = b"v" * (VALUE_BYTES + 1)
    put(db, b"big", big)
    warm(db, b"big")
    assert b"big" not in db._read_cache.values
    for n in range(ENTRIES + 50):
        tr = db.create_transaction()
        tr.get(b"key%05d" % n)
        tr.commit()
    assert len(db._read_cache.values) <= ENTRIES
    assert b"key%05d" % (ENTRIES + 49) in db._read_cache.values  # the oldest went first
    assert b"key00000" not in db._read_cache.values


# -- get_before_write: the cache's value, proven by the commit ------------------------------------
def test_get_before_write_is_served_without_a_statement(db: SQLiteDatabase) -> None:
    put(db, b"marker", b"1")
    warm(db, b"marker")
    statements: list[str] = []
    db._writer.set_trace_callback(statements.append)
    try:
        tr = db.create_transaction()
        assert tr.get_before_write(b"marker") == b"1"
        assert tr._conn is None
        assert statements == []  # not even PRAGMA data_version: the commit proves the read
        tr.get(b"marker")  # a plain get of a cached key still asks SQLite whether it is fresh
        assert statements == ["PRAGMA data_version"]
    finally:
        db._writer.set_trace_callback(None)


@pytest.fixture
def handles(path: str) -> Iterator[tuple[SQLiteDatabase, SQLiteDatabase]]:
    """Two handles of one file: ``a`` (the one under test) and ``b`` (another process)."""
    a, b = SQLiteDatabase(path), SQLiteDatabase(path)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def cached_then_written_by_b(a: SQLiteDatabase, b: SQLiteDatabase) -> None:
    """``a`` caches marker = old; ``b`` then commits marker = new, which ``a`` has not seen."""
    put(a, b"marker", b"old")
    warm(a, b"marker")
    put(b, b"marker", b"new")


def test_get_before_write_of_a_key_another_handle_wrote_fails_the_commit_then_retries(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles
    cached_then_written_by_b(a, b)
    tr = a.create_transaction()
    assert tr.get_before_write(b"marker") == b"old"  # what a last knew
    tr.set(b"job", b"j")
    with pytest.raises(KVError) as info:
        tr.commit()  # the commit mirrors b's write to the key read: a conflict
    assert info.value.code == NOT_COMMITTED
    assert a.transact(lambda t: t.get(b"job")) is None  # nothing of it was written

    seen: list[bytes | None] = []

    def enqueue_like(t: Transaction) -> None:
        seen.append(t.get_before_write(b"marker"))
        t.set(b"job", b"j")

    a.transact(enqueue_like)
    assert seen == [b"new"]  # the retry loop's attempt reads the new value


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoffs ``on_error`` sleeps (not slept), each at its full length."""
    slept: list[float] = []
    monkeypatch.setattr(api.time, "sleep", slept.append)
    monkeypatch.setattr(api.random, "random", lambda: 1.0)
    return slept


def write_conflict_retry(tr: Transaction) -> None:
    """Write, fail the commit with 1020, and let ``on_error`` prepare the retry."""
    tr.set(b"job", b"j")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED
    tr.on_error(info.value)


def test_the_first_retry_after_a_stale_get_before_write_does_not_wait(
    handles: tuple[SQLiteDatabase, SQLiteDatabase], waits: list[float],
) -> None:
    """The conflict was the cache's stale value, not contention: no backoff before the first
    retry; a second 1020 of the same transaction backs off as any other."""
    a, b = handles
    cached_then_written_by_b(a, b)
    tr = a.create_transaction()
    tr.get_before_write(b"marker")
    write_conflict_retry(tr)
    assert waits == []
    tr.get_before_write(b"marker")  # read fresh now; b writes it again before the commit
    put(b, b"marker", b"newer")
    write_conflict_retry(tr)
    assert len(waits) == 1 and waits[0] > 0


def test_a_1020_without_a_served_read_backs_off(
    handles: tuple[SQLiteDatabase, SQLiteDatabase], waits: list[float],
) -> None:
    a, b = handles
    put(a, b"marker", b"old")
    tr = a.create_transaction()
    tr.get(b"marker")
    put(b, b"marker", b"new")
    write_conflict_retry(tr)
    assert len(waits) == 1 and waits[0] > 0


def test_get_before_write_of_a_key_nobody_wrote_commits_after_another_handles_commit(
    handles: tuple[SQLiteDatabase, SQLiteDatabase],
) -> None:
    a, b = handles
    put(a, b"marker", b"1")
    warm(a, b"marker")
    put(b, b"elsewhere", b"x")  # another handle committed, but not to the key read
    tr = a.create_transaction()
    assert tr.get_before_write(b"marker") == b"1"
    tr.set(b"job", b"j")
    tr.commit()
    assert a.transact(lambda t: t.get(b"job")) == b"j"


@pytest.mark.parametrize("then", ["commit without writes", "read another key"])
def test_a_stale_get_before_write_fails_where_it_would_meet_a_newer_snapshot(
    handles: tuple[SQLiteDatabase, SQLiteDatabase], then: str
) -> None:
    # No commit checks a transaction that writes nothing: its commit reads the key again; and
    # a later read's snapshot must not contradict the value already given.
    a, b = handles
    cached_then_written_by_b(a, b)
    tr = a.create_transaction()
    assert tr.get_before_write(b"marker") == b"old"
    with pytest.raises(KVError) as info:
        if then == "commit without writes":
            tr.commit()
        else:
            tr.get(b"other")
    assert info.value.code == NOT_COMMITTED
    tr = a.create_transaction()
    assert tr.get_before_write(b"elsewhere") is None  # not cached: a snapshot, fresh as any
    tr.commit()
