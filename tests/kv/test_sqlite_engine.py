"""The embedded engine's own behaviour: the 5 s lifetime and the conflict log's window (moved
clocks, no sleeping), group-commit batches, several handles on one file (what several processes
do), storage errors, ``kv.open`` URLs and durability settings."""

from __future__ import annotations

import gc
import os
import sqlite3
import struct
import threading
import time
import weakref
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import quick_queue.kv as kv
from quick_queue.kv import sqlite_engine, sqlite_group_commit
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import (
    FILE_NOT_FOUND,
    NOT_COMMITTED,
    TRANSACTION_TOO_OLD,
    KVError,
    StorageError,
    is_retryable,
)
from quick_queue.kv.sqlite_engine import LOG_SECONDS, SQLiteDatabase
from quick_queue.kv.sqlite_transaction import LIFETIME, SQLiteTransaction
from tests.kv import sqlite_store

# The store fixtures and helper shared with the other engine tests (tests/kv/sqlite_store.py).
path = sqlite_store.path
db = sqlite_store.db
put = sqlite_store.put


def get(db: kv.Database, key: bytes) -> bytes | None:
    return db.transact(lambda tr: tr.get(key))


def sqlite_tr(db: SQLiteDatabase) -> SQLiteTransaction:
    return db.create_transaction()


# -- the 5 second lifetime (1007) ----------------------------------------------------------------
def test_lifetime_is_five_seconds() -> None:
    assert LIFETIME == 5.0
    assert LOG_SECONDS > LIFETIME


def test_a_read_after_five_seconds_gets_1007(db: SQLiteDatabase) -> None:
    put(db, b"k", b"v")
    tr = sqlite_tr(db)
    assert tr.get(b"k") == b"v"
    tr._read_at -= 6
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert info.value.code == TRANSACTION_TOO_OLD
    assert is_retryable(info.value)
    with pytest.raises(KVError) as info:
        tr.get_range(b"", b"\xff")
    assert info.value.code == TRANSACTION_TOO_OLD


def test_a_commit_after_five_seconds_gets_1007_and_writes_nothing(db: SQLiteDatabase) -> None:
    tr = sqlite_tr(db)
    tr.get(b"k")
    tr.set(b"k", b"late")
    tr._read_at -= 6
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == TRANSACTION_TOO_OLD
    assert get(db, b"k") is None


def test_just_under_five_seconds_is_fine(db: SQLiteDatabase) -> None:
    tr = sqlite_tr(db)
    tr.get(b"k")
    tr._read_at -= LIFETIME - 0.5
    tr.get(b"k")
    tr.set(b"k", b"v")
    tr.commit()
    assert get(db, b"k") == b"v"


def test_a_transaction_that_never_read_cannot_be_too_old(db: SQLiteDatabase) -> None:
    tr = sqlite_tr(db)
    tr.set(b"k", b"v")
    tr._created -= 60  # its read version would be taken at commit
    tr.commit()
    assert get(db, b"k") == b"v"


def test_the_retry_loop_retries_1007(db: SQLiteDatabase) -> None:
    calls = []

    def slow_once(tr: Transaction) -> None:
        calls.append(1)
        value = int(tr.get(b"n") or b"0")
        if len(calls) == 1:
            assert isinstance(tr, SQLiteTransaction)
            tr._read_at -= 6
        tr.set(b"n", b"%d" % (value + 1))

    db.transact(slow_once)
    assert len(calls) == 2
    assert get(db, b"n") == b"1"


def test_timeout_counts_from_creation_across_retries(db: SQLiteDatabase) -> None:
    tr = sqlite_tr(db)
    tr.options.set_timeout(1000)
    tr._created -= 0.9
    tr.get(b"k")  # 900 ms: still in time
    tr.on_error(KVError(NOT_COMMITTED))  # a retry keeps the clock running, as in FoundationDB
    tr._created -= 0.2
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert info.value.code == 1031


# -- the conflict log's window ----------------------------------------------------------------
class ShiftedClock:
    """``time`` as the engine sees it, with the wall clock moved forward."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def time(self) -> float:
        return time.time() + self.shift

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_pruned_history_gives_1007_not_a_missed_conflict(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(db, b"k", b"1")
    old = sqlite_tr(db)
    assert old.get(b"k") == b"1"
    put(db, b"k", b"2")  # conflicts with ``old``, and will age out of the log
    monkeypatch.setattr(sqlite_group_commit, "time", ShiftedClock(LOG_SECONDS + 2))
    put(db, b"other", b"x")  # this commit prunes the log
    rows = db._writer.execute("SELECT count(*) FROM qq_log").fetchone()[0]
    assert rows == 1  # only the newest row is kept once the rest are old
    old.set(b"k", b"3")
    with pytest.raises(KVError) as info:
        old.commit()
    assert info.value.code == TRANSACTION_TOO_OLD
    assert get(db, b"k") == b"2"
    fresh = sqlite_tr(db)
    fresh.get(b"k")
    fresh.set(b"k", b"4")
    fresh.commit()


def test_a_handle_that_missed_pruned_history_gives_1007(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:
        put(a, b"k", b"1")
        old = sqlite_tr(b)
        assert old.get(b"k") == b"1"
        put(a, b"k", b"2")
        monkeypatch.setattr(sqlite_group_commit, "time", ShiftedClock(LOG_SECONDS + 2))
        put(a, b"other", b"x")  # a prunes the shared log before b ever saw version "k=2"
        old.set(b"k", b"3")
        with pytest.raises(KVError) as info:
            old.commit()
        assert info.value.code == TRANSACTION_TOO_OLD
        assert get(b, b"k") == b"2"


# -- several handles on one file: what several processes do ------------------------------------
def test_conflicts_are_seen_across_handles(path: str) -> None:
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:
        put(a, b"q/1", b"x")
        put(a, b"q/2", b"x")
        t_b = sqlite_tr(b)
        assert len(t_b.get_range(b"q/", b"q0", limit=1)) == 1
        point = sqlite_tr(b)
        point.get(b"k")
        put(a, b"q/1\x00", b"x")  # past what t_b saw: no conflict
        put(a, b"k", b"from a")
        t_b.set(b"t", b"1")
        t_b.commit()
        point.set(b"t", b"2")
        with pytest.raises(KVError) as info:
            point.commit()
        assert info.value.code == NOT_COMMITTED
        assert get(b, b"k") == b"from a"
        assert get(a, b"t") == b"1"


def test_versionstamps_increase_across_handles(path: str) -> None:
    stamps = []
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:
        for i in range(10):
            tr = sqlite_tr(a if i % 3 else b)
            tr.set_versionstamped_value(b"v", b"\x00" * 10 + struct.pack("<I", 0))
            future = tr.get_versionstamp()
            tr.commit()
            stamps.append(future.wait())
    assert stamps == sorted(set(stamps))


def test_counters_from_threads_on_two_handles(path: str) -> None:
    with closing(SQLiteDatabase(path)) as a, closing(SQLiteDatabase(path)) as b:

        def increment(tr: Transaction) -> None:
            tr.set(b"n", b"%d" % (int(tr.get(b"n") or b"0") + 1))

        def work(db: SQLiteDatabase) -> None:
            for _ in range(25):
                db.transact(increment)

        threads = [threading.Thread(target=work, args=(d,)) for d in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert get(a, b"n") == b"100"


# -- group-commit batches --------------------------------------------------------------------------
def commit_in_one_batch(db: SQLiteDatabase, *transactions: Transaction) -> list[KVError | None]:
    """Commit ``transactions`` in this order inside one group-commit batch: a batch is marked as
    in flight so each commit queues, then the first queued request's thread is made the leader,
    as the end of a batch does, and commits them all together."""
    results: list[KVError | None] = [None] * len(transactions)

    def run(i: int, tr: Transaction) -> None:
        try:
            tr.commit()
        except KVError as error:
            results[i] = error

    with db._commit_lock:
        db._leading = True
    threads = []
    for i, tr in enumerate(transactions):
        thread = threading.Thread(target=run, args=(i, tr))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while True:  # wait until this request is queued, so the order is the given one
            with db._commit_lock:
                if len(db._pending) == i + 1:
                    break
            assert time.monotonic() < deadline, "commit request never queued"
            time.sleep(0.001)
    with db._commit_lock:  # the batch "in flight" ends: its leader hands the lead on
        following = db._pending[0]
    assert following.wake is not None
    following.wake.release()
    for thread in threads:
        thread.join()
    return results


def test_a_batch_resolves_its_requests_in_order(db: SQLiteDatabase) -> None:
    writer, reader, bystander = sqlite_tr(db), sqlite_tr(db), sqlite_tr(db)
    reader.get(b"k")
    writer.set(b"k", b"w")
    reader.set(b"r", b"r")
    bystander.set(b"b", b"b")
    w_stamp, r_stamp, b_stamp = (t.get_versionstamp() for t in (writer, reader, bystander))
    results = commit_in_one_batch(db, writer, reader, bystander)
    assert results[0] is None and results[2] is None
    assert results[1] is not None and results[1].code == NOT_COMMITTED
    # one batch, one commit version; the order inside the batch is the last two bytes
    assert w_stamp.wait()[:8] == b_stamp.wait()[:8]
    assert w_stamp.wait()[8:] == b"\x00\x00" and b_stamp.wait()[8:] == b"\x00\x01"
    with pytest.raises(KVError):
        r_stamp.wait()
    assert get(db, b"k") == b"w" and get(db, b"b") == b"b" and get(db, b"r") is None


def test_a_versionstamped_key_conflicts_with_a_later_reader_in_the_same_batch(
    db: SQLiteDatabase,
) -> None:
    # an enqueue and a reader of the queue in one batch: the reader did not see the new item,
    # so it must not commit after it (FoundationDB write-conflicts every key the stamp can make)
    enqueue, scan = sqlite_tr(db), sqlite_tr(db)
    assert scan.get_range(b"q/", b"q0") == []
    scan.set(b"queue-was-empty", b"1")
    enqueue.set_versionstamped_key(b"q/" + b"\x00" * 10 + struct.pack("<I", 2), b"item")
    results = commit_in_one_batch(db, enqueue, scan)
    assert results[0] is None
    assert results[1] is not None and results[1].code == NOT_COMMITTED
    assert get(db, b"queue-was-empty") is None


def test_a_leader_yields_once_after_a_batch_of_several_and_never_alone(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (``_lead``: the threads a batch of several woke join the next batch if they can)
    yields: list[float] = []
    real_sleep = time.sleep

    def recording(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            yields.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(sqlite_group_commit.time, "sleep", recording)
    for n in range(5):  # one producer: batches of one, no yield
        put(db, b"k%d" % n, b"v")
    assert yields == []
    first, second = sqlite_tr(db), sqlite_tr(db)
    first.set(b"a", b"1")
    second.set(b"b", b"2")
    assert commit_in_one_batch(db, first, second) == [None, None]
    put(db, b"after", b"v")  # the batch after one of two yields once
    put(db, b"later", b"v")  # ... and the next one, after a batch of one, does not
    assert yields == [0]


def commit_with_late_joiners(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch, first: Transaction,
    *late: Transaction,
) -> list[KVError | None]:
    """Commit ``first``; while its batch is being applied (the leader is in its first
    ``apply_request``), the ``late`` transactions are committed from threads of their own
    and queued, in this order, before the leader goes on to its COMMIT."""
    results: list[KVError | None] = [None] * (1 + len(late))
    apply_request = sqlite_group_commit.apply_request
    threads: list[threading.Thread] = []

    def run(i: int, tr: Transaction) -> None:
        try:
            tr.commit()
        except KVError as error:
            results[i] = error

    def applying(*args: Any) -> None:
        if not threads:
            for i, tr in enumerate(late, 1):
                thread = threading.Thread(target=run, args=(i, tr))
                thread.start()
                threads.append(thread)
                deadline = time.monotonic() + 10
                while len(db._pending) < i:  # queued behind the batch in flight
                    assert time.monotonic() < deadline, "commit request never queued"
                    time.sleep(0.001)
        apply_request(*args)

    monkeypatch.setattr(sqlite_group_commit, "apply_request", applying)
    run(0, first)
    for thread in threads:
        thread.join()
    return results


def test_commits_queued_while_a_batch_is_applied_join_it(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, late, later = sqlite_tr(db), sqlite_tr(db), sqlite_tr(db)
    first.set(b"a", b"1")
    late.set(b"b", b"2")
    later.add(b"n", b"\x01")
    stamps = [tr.get_versionstamp() for tr in (first, late, later)]
    assert commit_with_late_joiners(db, monkeypatch, first, late, later) == [None] * 3
    # one COMMIT: one version, and the late ones ordered after the batch's own
    assert len({stamp.wait()[:8] for stamp in stamps}) == 1
    assert [stamp.wait()[8:] for stamp in stamps] == [b"\x00\x00", b"\x00\x01", b"\x00\x02"]
    assert get(db, b"a") == b"1" and get(db, b"b") == b"2" and get(db, b"n") == b"\x01"
    assert not db._pending and not db._leading


def test_a_late_commit_that_read_what_the_batch_wrote_is_rejected(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = sqlite_tr(db), sqlite_tr(db)
    assert reader.get(b"k") is None
    reader.set(b"seen-nothing", b"1")
    writer.set(b"k", b"w")
    results = commit_with_late_joiners(db, monkeypatch, writer, reader)
    assert results[0] is None
    assert results[1] is not None and results[1].code == NOT_COMMITTED
    assert get(db, b"k") == b"w" and get(db, b"seen-nothing") is None


def relaxed_tr(db: SQLiteDatabase) -> SQLiteTransaction:
    tr = sqlite_tr(db)
    tr.options.set_relaxed_durability()
    return tr


def test_late_commits_join_only_a_batch_of_their_kind(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a durable commit never rides on a COMMIT that is not synced; a relaxed one does not wait
    # for a sync it did not ask for; the others keep their turn in the queue
    for first, late in ((relaxed_tr(db), [sqlite_tr(db), relaxed_tr(db)]),
                        (sqlite_tr(db), [relaxed_tr(db), sqlite_tr(db)])):
        for n, tr in enumerate([first, *late]):
            tr.set(b"k%d" % n, b"v")
        stamps = [tr.get_versionstamp() for tr in (first, *late)]
        assert commit_with_late_joiners(db, monkeypatch, first, *late) == [None] * 3
        versions = [stamp.wait()[:8] for stamp in stamps]
        assert versions[0] < versions[1] <= versions[2]
    # ... while one of the batch's kind joins it
    for kind in (relaxed_tr, sqlite_tr):
        first, late = kind(db), kind(db)
        first.set(b"a", b"1")
        late.set(b"b", b"1")
        stamps = first.get_versionstamp(), late.get_versionstamp()
        assert commit_with_late_joiners(db, monkeypatch, first, late) == [None, None]
        assert stamps[0].wait()[:8] == stamps[1].wait()[:8]


def test_a_batch_takes_at_most_late_join_max_requests(
    db: SQLiteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_group_commit, "LATE_JOIN_MAX", 2)
    transactions = [sqlite_tr(db) for _ in range(3)]
    for n, tr in enumerate(transactions):
        tr.set(b"k%d" % n, b"v")
    stamps = [tr.get_versionstamp() for tr in transactions]
    assert commit_with_late_joiners(db, monkeypatch, *transactions) == [None] * 3
    versions = [stamp.wait()[:8] for stamp in stamps]
    assert versions[0] == versions[1] < versions[2]


def test_requests_of_one_batch_see_each_others_writes(db: SQLiteDatabase) -> None:
    first, second = sqlite_tr(db), sqlite_tr(db)
    first.add(b"n", b"\x01")
    second.add(b"n", b"\x02")
    first.set(b"a", b"1")
    second.clear(b"a")
    assert commit_in_one_batch(db, first, second) == [None, None]
    assert get(db, b"n") == b"\x03"
    assert get(db, b"a") is None


def test_waiting_on_the_stamp_before_commit_raises_instead_of_blocking(
    db: SQLiteDatabase,
) -> None:
    tr = sqlite_tr(db)
    tr.set(b"k", b"v")
    future = tr.get_versionstamp()
    with pytest.raises(KVError):
        future.wait()
    tr.commit()
    assert len(future.wait()) == 10


def test_a_read_only_stamp_fails_with_no_commit_version(db: SQLiteDatabase) -> None:
    tr = sqlite_tr(db)
    future = tr.get_versionstamp()
    tr.commit()
    with pytest.raises(KVError) as info:
        future.wait()
    assert info.value.code == 2021


# -- storage errors ----------------------------------------------------------------------------
def assert_names(error: StorageError, path: str) -> None:
    assert isinstance(error, KVError)
    assert error.path == path
    assert path in str(error)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(StorageError) as info:
        kv.open(f"sqlite:///{path}")
    assert_names(info.value, str(path))
    assert "not a quick_queue database" in str(info.value)
    assert path.read_text().startswith("these are my notes")  # left alone


def test_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "folder" / "kv.db"
    with pytest.raises(StorageError) as info:
        kv.open(f"sqlite:///{path}")
    assert_names(info.value, str(path))
    assert info.value.code == FILE_NOT_FOUND
    assert not (tmp_path / "no").exists()


def test_a_path_that_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "a-folder.db"
    path.mkdir()
    with pytest.raises(StorageError) as info:
        kv.open(f"sqlite:///{path}")
    assert_names(info.value, str(path))


def _filled_database(path: str) -> None:
    with closing(SQLiteDatabase(path)) as db:

        def fill(tr: Transaction) -> None:
            for i in range(300):
                tr.set(b"row%04d" % i, bytes([i % 256]) * 1000)

        db.transact(fill)
    assert not os.path.exists(path + "-wal")  # checkpointed into the main file at close


def test_a_corrupted_file_fails_with_storage_error(path: str) -> None:
    _filled_database(path)
    with open(path, "r+b") as f:  # smash everything after the first two pages
        f.seek(2 * 4096)
        f.write(b"\xde\xad\xbe\xef" * (os.path.getsize(path) // 4))
    with pytest.raises(StorageError) as info:
        db = kv.open(f"sqlite:///{path}")
        try:
            db.transact(lambda tr: tr.get_range(b"", b"\xff"))
        finally:
            db.close()
    assert_names(info.value, path)
    assert "corrupt" in str(info.value)


def test_a_corrupt_page_fails_the_read_that_meets_it(path: str) -> None:
    _filled_database(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # the last pages hold the newest rows of the kv table
        f.seek(size - 20 * 4096)
        f.write(b"\xde\xad\xbe\xef" * 10 * 1024)
    with closing(SQLiteDatabase(path)) as db:
        assert db.integrity_check() != "ok"
        with pytest.raises(StorageError) as info:
            db.transact(lambda tr: tr.get_range(b"", b"\xff"))
        assert_names(info.value, path)
        with pytest.raises(StorageError):
            db.transact(lambda tr: tr.snapshot.get(b"row0290"))
        with pytest.raises(StorageError):
            db.transact(lambda tr: tr.get(b"row0290"))


def test_integrity_check_of_a_sound_file(db: SQLiteDatabase) -> None:
    put(db, b"k", b"v")
    assert db.integrity_check() == "ok"


# -- kv.open ---------------------------------------------------------------------------------
def test_open_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with kv.open("sqlite:///relative.db") as rel:
        assert isinstance(rel, SQLiteDatabase)
        put(rel, b"k", b"rel")
    assert (tmp_path / "relative.db").exists()
    with kv.open(f"sqlite:///{tmp_path}/relative.db") as absolute:  # sqlite:////abs/path
        assert get(absolute, b"k") == b"rel"
        assert absolute.url == f"sqlite:///{tmp_path}/relative.db"


@pytest.mark.parametrize(
    ("url", "synchronous", "pragma"),
    [
        ("sqlite:///{dir}/a.db", "FULL", 2),
        ("sqlite:///{dir}/a.db?synchronous=FULL", "FULL", 2),
        ("sqlite:///{dir}/a.db?synchronous=normal", "NORMAL", 1),
        ("SQLite:///{dir}/a.db", "FULL", 2),
        ("memory://", "OFF", 0),
    ],
)
def test_durability_settings(tmp_path: Path, url: str, synchronous: str, pragma: int) -> None:
    with kv.open(url.format(dir=tmp_path)) as db:
        assert isinstance(db, SQLiteDatabase)
        assert db.synchronous == synchronous
        assert db.durability()["synchronous"] == synchronous
        assert db._writer.execute("PRAGMA synchronous").fetchone()[0] == pragma
        assert db._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "kv.db",
        "/tmp/kv.db",
        "sqlite:",
        "sqlite://",
        "sqlite:///",
        "sqlite://relative.db",
        "sqlite:///:memory:",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?synchronous=fast",
        "sqlite:///x.db?cache=big",
        "memory://somewhere",
        "memory://?synchronous=FULL",
        "fdb://relative/fdb.cluster",
        "fdb://?timeout=1",
        "postgres://localhost/db",
        "redis://localhost",
    ],
)
def test_bad_urls_list_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValueError) as info:
        kv.open(url)
    message = str(info.value)
    assert repr(url) in message
    for form in (
        "sqlite:///relative/path.db",
        "sqlite:////absolute/path.db",
        "memory://",
        "fdb://",
        "fdb:///path/to/fdb.cluster",
        "synchronous=FULL|NORMAL",
    ):
        assert form in message


def test_memory_databases_are_private_and_removed_at_close() -> None:
    first, second = SQLiteDatabase("", ephemeral=True), kv.open("memory://")
    assert isinstance(second, SQLiteDatabase)
    try:
        put(first, b"k", b"1")
        assert get(second, b"k") is None
        folder = os.path.dirname(first.path)
        assert os.path.exists(first.path)
    finally:
        first.close()
        second.close()
    assert not os.path.exists(folder)


def test_a_closed_database_refuses_work(path: str) -> None:
    db = SQLiteDatabase(path)
    tr = db.create_transaction()
    db.close()
    db.close()  # twice is fine
    with pytest.raises(KVError):
        db.create_transaction()
    with pytest.raises(KVError):
        tr.get(b"k")


def test_data_survives_reopening(path: str) -> None:
    with closing(SQLiteDatabase(path)) as db:
        put(db, b"k", b"v")
        tr = sqlite_tr(db)
        tr.set_versionstamped_value(b"s", b"\x00" * 10 + struct.pack("<I", 0))
        future = tr.get_versionstamp()
        tr.commit()
        first = future.wait()
    with closing(SQLiteDatabase(path)) as db:
        assert get(db, b"k") == b"v"
        assert get(db, b"s") == first
        tr = sqlite_tr(db)
        tr.set(b"x", b"1")
        future = tr.get_versionstamp()
        tr.commit()
        assert future.wait() > first  # versions keep increasing across reopenings
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT v FROM kv WHERE k = ?", (b"k",)).fetchone()[0] == b"v"
    finally:
        conn.close()


def test_relaxed_durability_skips_only_the_sync_of_relaxed_batches(tmp_path: Path) -> None:
    """A relaxed commit is committed (visible to another handle, and to a reopened file) but
    its batch runs at synchronous=NORMAL; the next durable commit goes back to FULL, which
    syncs the WAL and with it every relaxed commit before it."""
    url = f"sqlite:///{tmp_path}/relaxed.db"
    db = kv.open(url)
    assert isinstance(db, SQLiteDatabase)
    level = db._writer.execute

    def relaxed(tr: kv.Transaction) -> None:
        tr.options.set_relaxed_durability()
        tr.set(b"lease", b"1")

    db.transact(relaxed)
    assert level("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    other = kv.open(url)
    assert other.transact(lambda tr: tr.get(b"lease")) == b"1"
    db.transact(lambda tr: tr.set(b"done", b"1"))
    assert level("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for a durable commit
    other.close()
    db.close()
    reopened = kv.open(url)
    assert reopened.transact(lambda tr: (tr.get(b"lease"), tr.get(b"done"))) == (b"1", b"1")
    reopened.close()


def _page_size(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def test_a_job_sized_value_stays_in_its_leaf_page(tmp_path: Path) -> None:
    # Why the page size (sqlite_engine.PAGE_SIZE): a value SQLite cannot keep in its leaf goes
    # to an overflow page, which each rewrite allocates and frees again. A job's record with a
    # payload of a few hundred bytes, leased and rewritten, must not.
    path = str(tmp_path / "q.db")
    db = SQLiteDatabase(path)
    try:
        record = b"h" * 170 + b"\n" + b"p" * 700  # a header and a 700-byte payload
        for value in (record + b"0", record + b"1"):  # written, then rewritten (a lease)
            db.transact(lambda tr, value=value: [tr.set(b"zone/i/%04d" % n, value)
                                                 for n in range(50)])
    finally:
        db.close()
    with closing(sqlite3.connect(path)) as conn:
        try:
            overflow = conn.execute(
                "SELECT count(*) FROM dbstat WHERE name = 'kv' AND pagetype = 'overflow'"
            ).fetchone()[0]
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to count overflow pages with")
    assert overflow == 0


def test_a_commit_that_empties_pages_does_not_write_them_again(tmp_path: Path) -> None:
    # Why ``PRAGMA secure_delete=FAST`` (sqlite_engine): with Debian's default (ON) every page
    # a commit frees is zeroed and so written to the WAL once more; a settle frees the pages
    # of the records it deletes. Measured here: ON wrote 277 frames for this clear, FAST 24.
    path = str(tmp_path / "q.db")
    db = SQLiteDatabase(path)

    def wal_frames() -> int:
        """Frames in the WAL's current run, all copied: the next commit starts it over."""
        with closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    try:
        db.transact(lambda tr: [tr.set(b"zone/i/%04d" % n, b"r" * 1000) for n in range(240)])
        wal_frames()
        db.transact(lambda tr: tr.set(b"other", b""))
        assert wal_frames() < 5  # that commit started the WAL over; so will the next one
        db.transact(lambda tr: tr.clear_range(b"zone/i/", b"zone/i0"))
        frames = wal_frames()
        assert db.transact(lambda tr: tr.get_range(b"zone/", b"zone0")) == []
    finally:
        db.close()
    assert frames < 60  # ~60 leaves were freed; the pages that still hold rows are written


def test_a_new_store_has_the_engines_page_size_and_an_old_one_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = str(tmp_path / "new.db")
    SQLiteDatabase(new).close()
    assert _page_size(new) == sqlite_engine.PAGE_SIZE == 4096
    old = str(tmp_path / "old.db")
    with monkeypatch.context() as patch:  # a store made before: 1,024-byte pages
        patch.setattr(sqlite_engine, "PAGE_SIZE", 1024)
        SQLiteDatabase(old).close()
    assert _page_size(old) == 1024
    db = SQLiteDatabase(old)
    try:
        big = os.urandom(100_000)
        db.transact(lambda tr: (tr.set(b"big", big), tr.add(b"n", struct.pack("<q", 1))))
        assert db.transact(lambda tr: tr.get(b"big")) == big
    finally:
        db.close()
    assert _page_size(old) == 1024
    reopened = SQLiteDatabase(new)
    try:
        reopened.transact(lambda tr: tr.set(b"big", big))
        assert reopened.transact(lambda tr: tr.get(b"big")) == big
    finally:
        reopened.close()


def test_a_transaction_is_freed_without_the_cycle_collector(db: SQLiteDatabase) -> None:
    put(db, b"k", b"v")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        tr = sqlite_tr(db)
        assert tr.snapshot.get(b"k") == b"v"  # holds a pooled connection in a snapshot
        pooled = len(db._pool)
        gone = weakref.ref(tr)
        del tr
        assert gone() is None  # freed at once: no reference cycle through tr.snapshot
        assert len(db._pool) == pooled + 1  # and its connection is back in the pool
    finally:
        if was_enabled:
            gc.enable()


def test_set_many_buffers_what_the_same_sets_buffer(db: SQLiteDatabase) -> None:
    pairs = [(b"b", b"2"), (b"a", b"1"), (b"b", b"3"), (b"c", b""), (b"x" * 10_001, b"big")]
    one_by_one, at_once = sqlite_tr(db), sqlite_tr(db)
    for key, value in pairs:
        one_by_one.set(key, value)
    at_once.set_many(pairs)
    assert at_once._writes == one_by_one._writes
    assert at_once._size == one_by_one._size
    assert isinstance(at_once._deferred, KVError)
    assert at_once._deferred.code == one_by_one._deferred.code  # type: ignore[union-attr]


def test_clear_many_buffers_what_the_same_clears_buffer(db: SQLiteDatabase) -> None:
    keys = [b"b", b"a", b"b", b"", b"x" * 10_001]
    one_by_one, at_once = sqlite_tr(db), sqlite_tr(db)
    for key in keys:
        one_by_one.clear(key)
    at_once.clear_many(keys)
    assert at_once._writes == one_by_one._writes
    assert at_once._size == one_by_one._size
    assert isinstance(at_once._deferred, KVError)
    assert at_once._deferred.code == one_by_one._deferred.code  # type: ignore[union-attr]
