"""Issue 14's adapter bugs against a live FoundationDB cluster (left out, with one line, where
none is reachable: see conftest.py). The offline stand-ins in test_fdb_issue14.py show the
adapter's plumbing; these show the real binding and cluster agree with it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import quick_queue.kv as kv
from quick_queue.kv.errors import (
    MAYBE_COMMITTED_CODES,
    RETRYABLE_CODES,
    is_retryable,
    maybe_committed,
)
from quick_queue.kv.fdb import FDBDatabase, kv_error_from_fdb, wrap_database

pytestmark = pytest.mark.fdb


@pytest.fixture
def fdb_db(fdb_url: str) -> Any:
    db = kv.open(fdb_url)
    assert isinstance(db, FDBDatabase)
    yield db
    db.close()


def test_our_table_is_the_client_librarys(fdb_db: FDBDatabase) -> None:
    import fdb  # type: ignore[import-untyped,unused-ignore]

    for code in range(1000, 2300):
        error = fdb.FDBError(code)
        assert (code in RETRYABLE_CODES) == bool(fdb.predicates.is_retryable(error)) or code in (
            1223, 1235, 1242, 2131,  # known to some client releases only
        ), code
        said = bool(fdb.predicates.is_maybe_committed(error))
        assert (code in MAYBE_COMMITTED_CODES) == said, code
        mapped = kv_error_from_fdb(error)
        assert is_retryable(mapped) == bool(fdb.predicates.is_retryable(error))
        assert maybe_committed(mapped) == bool(fdb.predicates.is_maybe_committed(error))


def test_a_users_fdb_transactional_retries_a_too_old_read_of_ours(fdb_db: FDBDatabase) -> None:
    import fdb  # type: ignore[import-untyped,unused-ignore]

    key = b"qq-test/" + uuid.uuid4().hex.encode()
    attempts: list[int] = []

    @fdb.transactional
    def place_order(tr: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:  # make this attempt's reads 6 s old: the cluster says 1007
            # Taken on another transaction: once read, a version cannot be set.
            other = fdb_db.raw.create_transaction()  # kept alive: a dropped one cancels
            version = other.get_read_version().wait()
            if version < 10_000_000:
                pytest.skip("the cluster is too young to read 6 s in the past")
            tr.set_read_version(version - 6_000_000)
        ours = kv.as_transaction(tr)  # what queue.enqueue(..., tr=tr) does with it
        assert ours is not None
        ours.get(key)
        ours.set(key, b"placed")

    place_order(fdb_db.raw)
    assert len(attempts) == 2  # retried by the user's loop, not aborted by a KVError
    assert fdb_db.transact(lambda tr: tr.get(key)) == b"placed"
    fdb_db.transact(lambda tr: tr.clear(key))


def test_a_raw_database_wrapped_names_its_cluster_file(fdb_db: FDBDatabase) -> None:
    import fdb  # type: ignore[import-untyped,unused-ignore]

    raw = fdb.open(fdb_db.cluster_file)
    wrapped = wrap_database(raw)
    assert wrapped.url == fdb_db.url and wrapped.url != "fdb://"
    reopened = kv.open(wrapped.url)  # what a spawned child does
    assert reopened.transact(lambda tr: tr.get(b"qq-test/none")) is None


def test_our_transactions_carry_the_database_timeout(fdb_db: FDBDatabase) -> None:
    tr = fdb_db.create_transaction()
    tr.options.set_timeout(1)  # 1 ms: the next read cannot make it
    with pytest.raises(kv.KVError) as info:
        for _ in range(1000):
            tr.get(b"qq-test/none")
    assert info.value.code == 1031
    from quick_queue.kv.errors import is_transient

    assert is_transient(info.value) and not is_retryable(info.value)


def test_wait_for_change_wakes_on_notify_change(fdb_db: FDBDatabase) -> None:
    import threading
    import time

    fdb_db.wait_for_change(0.0)  # set the watch
    woke = threading.Event()

    def waiter() -> None:
        fdb_db.wait_for_change(20.0)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)  # let the waiter block on the watch (a real cluster: real time)
    started = time.monotonic()
    fdb_db.transact(fdb_db.notify_change)
    assert woke.wait(10.0)
    thread.join()
    assert time.monotonic() - started < 5.0
