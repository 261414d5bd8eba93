"""The retry loop tells ``quick_queue.kv.retries`` listeners the code of every retry it makes
(exported as ``quick_queue_store_retries_total`` by ``quick_queue.metrics``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import quick_queue.kv as kv
from quick_queue.kv import retries
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import (
    COMMIT_UNKNOWN_RESULT,
    NOT_COMMITTED,
    TRANSACTION_TOO_OLD,
    KVError,
)
from quick_queue.kv.faults import FaultyDatabase


@pytest.fixture
def counted() -> Iterator[retries.RetryCounter]:
    counter = retries.RetryCounter()
    retries.listen(counter)
    yield counter
    retries.unlisten(counter)


@pytest.fixture
def db() -> Iterator[Database]:
    database = kv.open("memory://")
    yield database
    database.close()


def test_a_conflict_retried_by_transact_is_counted_as_1020(
    db: Database, counted: retries.RetryCounter
) -> None:
    calls = []

    def bump(tr: Transaction) -> None:
        seen = tr.get(b"k")
        calls.append(seen)
        if len(calls) == 1:  # another transaction writes what we read, then we commit
            other = db.create_transaction()
            other.set(b"k", b"theirs")
            other.commit()
        tr.set(b"k", (seen or b"") + b"+1")

    db.transact(bump)
    assert calls == [None, b"theirs"]
    assert counted.snapshot() == {NOT_COMMITTED: 1}
    assert db.transact(lambda tr: tr.get(b"k")) == b"theirs+1"


def test_injected_faults_are_counted_by_code(db: Database, counted: retries.RetryCounter) -> None:
    faulty = FaultyDatabase(db, unknown_result=1.0)
    attempts = []

    def write(tr: Transaction) -> None:
        attempts.append(1)
        if len(attempts) == 2:
            faulty.set_rates(unknown_result=0.0, too_old=1.0, read_too_old=0.0)
        elif len(attempts) == 3:
            faulty.set_rates(too_old=0.0)
        tr.set(b"f", b"1")

    faulty.transact(write)
    assert len(attempts) == 3
    assert counted.snapshot() == {COMMIT_UNKNOWN_RESULT: 1, TRANSACTION_TOO_OLD: 1}


def test_fdb_like_faults_each_retry_counted_once(
    db: Database, counted: retries.RetryCounter
) -> None:
    faulty = FaultyDatabase.fdb_like(db, seed=7)
    faulty.set_rates(timed_out=0.0, read_timed_out=0.0)  # 1031 is not retried: it would raise
    for i in range(40):
        faulty.transact(lambda tr, i=i: tr.set(b"n%d" % i, b"v"))
    counts = counted.snapshot()
    retried = sum(faulty.injected.values())
    assert sum(counts.values()) == retried > 0
    assert set(counts) <= {NOT_COMMITTED, COMMIT_UNKNOWN_RESULT, TRANSACTION_TOO_OLD, 1009}


def test_an_error_that_is_not_retried_is_not_counted(
    db: Database, counted: retries.RetryCounter
) -> None:
    def refuse(tr: Transaction) -> None:
        raise KVError(2000)

    with pytest.raises(KVError):
        db.transact(refuse)
    assert counted.snapshot() == {}


def test_unlisten_stops_the_calls_and_names_are_fdb_s(db: Database) -> None:
    counter = retries.RetryCounter()
    retries.listen(counter)
    retries.unlisten(counter)
    assert counter not in retries.listeners
    assert retries.name_of(NOT_COMMITTED) == "not_committed"
    assert retries.name_of(4242) == "error_4242"
    assert retries.counter() is retries.counter()
