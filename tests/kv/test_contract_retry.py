"""Contract: the retry loop (``db.transact``, ``@transactional``, ``on_error``), options, size
limits and threads, on every engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import (
    KEY_TOO_LARGE,
    NOT_COMMITTED,
    TRANSACTION_TIMED_OUT,
    TRANSACTION_TOO_LARGE,
    VALUE_TOO_LARGE,
    KVError,
    is_retryable,
)

if TYPE_CHECKING:
    from conftest import Space

Age = Callable[[Transaction, float], None]


def conflict_with(db: Database, tr: Transaction, key: bytes) -> None:
    """Make ``tr`` doomed: it reads ``key``, then another transaction writes it."""
    tr.get(key)
    other = db.create_transaction()
    other.add(key, b"\x01")
    other.commit()


# -- transact and @transactional ----------------------------------------------------------------
def test_transact_commits_and_returns(db: Database, space: Space) -> None:
    def put(tr: Transaction, key: bytes, value: bytes, *, suffix: bytes = b"") -> str:
        tr.set(key, value + suffix)
        return "done"

    assert db.transact(put, space.k("a"), b"1", suffix=b"!") == "done"
    assert space.read(space.k("a")) == b"1!"


def test_transactional_with_a_database_commits(db: Database, space: Space) -> None:
    @kv.transactional
    def put(tr: Transaction, key: bytes, value: bytes) -> bytes:
        tr.set(key, value)
        return value

    assert put(db, space.k("a"), b"1") == b"1"
    assert space.read(space.k("a")) == b"1"


def test_transactional_given_a_transaction_joins_it(db: Database, space: Space) -> None:
    @kv.transactional
    def put(tr: Transaction, key: bytes, value: bytes) -> None:
        tr.set(key, value)

    tr = db.create_transaction()
    put(tr, space.k("a"), b"1")
    assert tr.get(space.k("a")) == b"1"
    assert space.read(space.k("a")) is None  # no commit of its own
    tr.commit()
    assert space.read(space.k("a")) == b"1"


def test_nested_transactional_calls_share_one_commit(db: Database, space: Space) -> None:
    calls = {"inner": 0, "outer": 0}

    @kv.transactional
    def inner(tr: Transaction, key: bytes) -> None:
        calls["inner"] += 1
        tr.set(key, b"inner")

    @kv.transactional
    def outer(tr: Transaction, fail: bool) -> None:
        calls["outer"] += 1
        inner(tr, space.k("a"))
        assert tr.get(space.k("a")) == b"inner"
        tr.set(space.k("b"), b"outer")
        if fail:
            raise ValueError("outer fails after inner ran")

    with pytest.raises(ValueError, match="outer fails"):
        outer(db, True)
    assert space.dump() == {}  # the inner write was never committed on its own
    outer(db, False)
    assert space.dump() == {space.k("a"): b"inner", space.k("b"): b"outer"}
    assert calls == {"inner": 2, "outer": 2}


def test_nested_call_is_retried_with_its_caller(db: Database, space: Space) -> None:
    calls = {"inner": 0, "outer": 0}

    @kv.transactional
    def inner(tr: Transaction) -> None:
        calls["inner"] += 1
        tr.add(space.k("n"), b"\x01")

    @kv.transactional
    def outer(tr: Transaction) -> None:
        calls["outer"] += 1
        inner(tr)
        if calls["outer"] == 1:
            conflict_with(db, tr, space.k("hot"))

    outer(db)
    assert calls == {"inner": 2, "outer": 2}
    assert space.read(space.k("n")) == b"\x01"  # the failed attempt left nothing


def test_transactional_refuses_other_first_arguments() -> None:
    @kv.transactional
    def noop(tr: Transaction) -> None:
        pass

    with pytest.raises(TypeError, match="noop"):
        noop("not a database")


def test_a_non_kv_error_propagates_at_once(db: Database, space: Space) -> None:
    calls = []

    def boom(tr: Transaction) -> None:
        calls.append(1)
        tr.set(space.k("a"), b"1")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        db.transact(boom)
    assert len(calls) == 1
    assert space.dump() == {}


def test_a_non_retryable_kv_error_propagates_at_once(db: Database, space: Space) -> None:
    calls = []

    def too_big(tr: Transaction) -> None:
        calls.append(1)
        tr.set(space.k("a"), b"x" * 100_001)

    with pytest.raises(KVError) as info:
        db.transact(too_big)
    assert info.value.code == VALUE_TOO_LARGE
    assert not is_retryable(info.value)
    assert len(calls) == 1


def test_a_conflict_is_retried(db: Database, space: Space) -> None:
    calls = []

    def once_doomed(tr: Transaction) -> int:
        calls.append(1)
        if len(calls) == 1:
            conflict_with(db, tr, space.k("hot"))
        value = int.from_bytes(tr.get(space.k("n")) or b"\x00", "little") + 1
        tr.set(space.k("n"), value.to_bytes(1, "little"))
        return value

    assert db.transact(once_doomed) == 1
    assert len(calls) == 2
    assert space.read(space.k("n")) == b"\x01"


def test_a_retryable_error_raised_by_the_function_is_retried(db: Database, space: Space) -> None:
    calls = []

    def flaky(tr: Transaction) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise KVError(NOT_COMMITTED)
        tr.set(space.k("a"), b"1")

    db.transact(flaky)
    assert len(calls) == 3
    assert space.read(space.k("a")) == b"1"


@pytest.mark.parametrize("limit", [0, 2])
def test_retry_limit_is_honoured(db: Database, space: Space, limit: int) -> None:
    calls = []

    def always_doomed(tr: Transaction) -> None:
        calls.append(1)
        tr.options.set_retry_limit(limit)
        conflict_with(db, tr, space.k("hot"))
        tr.set(space.k("a"), b"1")

    with pytest.raises(KVError) as info:
        db.transact(always_doomed)
    assert info.value.code == NOT_COMMITTED
    assert len(calls) == limit + 1
    assert space.read(space.k("a")) is None


def test_on_error_by_hand(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("a"), b"1")
    tr.on_error(KVError(NOT_COMMITTED))  # retryable: returns, transaction reset
    assert tr.get(space.k("a")) is None
    tr.set(space.k("b"), b"2")
    tr.commit()
    assert space.dump() == {space.k("b"): b"2"}
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        tr.on_error(KVError(KEY_TOO_LARGE))
    assert info.value.code == KEY_TOO_LARGE
    with pytest.raises(ValueError, match="plain"):
        tr.on_error(ValueError("plain"))


def test_bad_option_values_are_refused(db: Database) -> None:
    tr = db.create_transaction()
    for call, value in (
        (tr.options.set_timeout, -1),
        (tr.options.set_retry_limit, -2),
        (tr.options.set_max_retry_delay, -1),
    ):
        with pytest.raises(KVError):
            call(value)


# -- timeout ---------------------------------------------------------------------------------
def test_timeout_option_gives_1031(db: Database, space: Space, age: Age) -> None:
    tr = db.create_transaction()
    tr.options.set_timeout(20)
    tr.set(space.k("a"), b"1")
    age(tr, 0.1)
    with pytest.raises(KVError) as info:
        tr.get(space.k("a"))
        tr.commit()
    assert info.value.code == TRANSACTION_TIMED_OUT
    assert not is_retryable(info.value)
    assert space.read(space.k("a")) is None


def test_timeout_is_not_retried_by_transact(db: Database, space: Space, age: Age) -> None:
    calls = []

    def slow(tr: Transaction) -> None:
        calls.append(1)
        tr.options.set_timeout(20)
        tr.set(space.k("a"), b"1")
        age(tr, 0.1)
        tr.get(space.k("a"))

    with pytest.raises(KVError) as info:
        db.transact(slow)
    assert info.value.code == TRANSACTION_TIMED_OUT
    assert len(calls) == 1


def test_no_timeout_by_default(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    assert tr.options.timeout_ms == 0
    tr.set(space.k("a"), b"1")
    tr.commit()


# -- size limits ---------------------------------------------------------------------------------
def test_largest_key_and_value_are_accepted(db: Database, space: Space) -> None:
    key = space.k("k" * (10_000 - len(space.prefix)))
    assert len(key) == 10_000
    space.write(key, b"v" * 100_000)
    assert space.read(key) == b"v" * 100_000


def test_key_too_large(db: Database, space: Space) -> None:
    key = space.k("k" * (10_001 - len(space.prefix)))
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        tr.set(key, b"v")
        tr.commit()
    assert info.value.code == KEY_TOO_LARGE


@pytest.mark.parametrize("op", ["set", "add"])
def test_value_too_large(db: Database, space: Space, op: str) -> None:
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        getattr(tr, op)(space.k("k"), b"v" * 100_001)
        tr.commit()
    assert info.value.code == VALUE_TOO_LARGE
    assert space.read(space.k("k")) is None


def test_transaction_too_large(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        for i in range(105):  # 105 values of 99,999 bytes: over 10,000,000 bytes
            tr.set(space.k(b"%03d" % i), b"v" * 99_999)
        tr.commit()
    assert info.value.code == TRANSACTION_TOO_LARGE
    assert space.dump() == {}


def test_a_large_commit_under_the_limit_goes_through(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    for i in range(50):  # about 5 MB
        tr.set(space.k(b"%03d" % i), b"v" * 99_999)
    tr.commit()
    assert len(space.dump()) == 50


# -- threads -----------------------------------------------------------------------------------
def run_threads(n: int, work: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_threads_hammering_one_counter_end_with_the_exact_total(db: Database, space: Space) -> None:
    counter = space.k("counter")
    attempts = []

    def increment(tr: Transaction) -> None:
        attempts.append(1)
        value = int(tr.get(counter) or b"0")
        tr.set(counter, b"%d" % (value + 1))

    def work() -> None:
        for _ in range(30):
            db.transact(increment)

    run_threads(6, work)
    assert space.read(counter) == b"180"
    assert len(attempts) >= 180  # conflicts were retried, never lost


def test_threads_with_atomic_adds_end_with_the_exact_total(db: Database, space: Space) -> None:
    counter = space.k("counter")

    def add(tr: Transaction) -> None:
        tr.add(counter, (1).to_bytes(8, "little"))
        tr.set(space.k("last"), b"x")

    def work() -> None:
        for _ in range(40):
            db.transact(add)

    run_threads(5, work)
    assert space.read(counter) == (200).to_bytes(8, "little")


def test_threads_moving_money_keep_the_sum(db: Database, space: Space) -> None:
    # read-modify-write on two of several keys: a lost update would change the sum
    accounts = [space.k(f"acct{i}") for i in range(4)]
    space.write_many({a: b"100" for a in accounts})
    lock = threading.Lock()
    rng_state = [0]

    def pick() -> tuple[bytes, bytes]:
        with lock:
            rng_state[0] += 1
            n = rng_state[0]
        return accounts[n % 4], accounts[(n * 7 + 1) % 4]

    def move(tr: Transaction, src: bytes, dst: bytes) -> None:
        a = int(tr.get(src) or b"0")
        b = int(tr.get(dst) or b"0")
        tr.set(src, b"%d" % (a - 1))
        tr.set(dst, b"%d" % (b + 1))

    def work() -> None:
        for _ in range(25):
            src, dst = pick()
            if src != dst:
                db.transact(move, src, dst)

    run_threads(4, work)
    assert sum(int(v) for v in space.dump().values()) == 400


def test_approximate_size_counts_what_the_commit_would_carry(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    empty = tr.get_approximate_size()
    assert 0 <= empty < 1_000
    for i in range(10):
        tr.set(space.k(b"%02d" % i), b"v" * 10_000)
    written = tr.get_approximate_size()
    assert 100_000 <= written - empty <= 130_000
    tr.get_range(space.begin, space.end)  # a read conflict range counts too, a little
    assert tr.get_approximate_size() >= written
