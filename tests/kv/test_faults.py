"""The fault-injection wrapper (quick_queue.kv.faults) over the embedded engine."""

from __future__ import annotations

import contextlib
import math
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import (
    COMMIT_UNKNOWN_RESULT,
    NOT_COMMITTED,
    TRANSACTION_TOO_OLD,
    KVError,
    is_retryable,
    is_transient,
    maybe_committed,
)
from quick_queue.kv.faults import (
    COMMIT_KINDS,
    DEFAULT_RATES,
    FAULT_KINDS,
    READ_KINDS,
    FaultyDatabase,
    FaultyTransaction,
    InjectedFault,
)


@pytest.fixture
def inner() -> Iterator[Database]:
    db = kv.open("memory://")
    try:
        yield db
    finally:
        db.close()


def _read(db: Database, key: bytes) -> bytes | None:
    return db.transact(lambda tr: tr.get(key))


def _write(tr: Transaction, key: bytes, value: bytes) -> None:
    tr.set(key, value)


# -- the three commit faults ---------------------------------------------------------------------
def test_unknown_result_really_commits_then_raises_1021(inner: Database) -> None:
    db = FaultyDatabase(inner, unknown_result=1.0)
    tr = db.create_transaction()
    assert isinstance(tr, FaultyTransaction)
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == COMMIT_UNKNOWN_RESULT
    assert isinstance(info.value, InjectedFault)
    assert maybe_committed(info.value) and is_retryable(info.value)
    assert _read(inner, b"k") == b"v"  # it really committed
    assert db.injected["unknown_result"] == 1
    assert db.total_injected == 1


def test_not_committed_does_not_commit(inner: Database) -> None:
    db = FaultyDatabase(inner, not_committed=1.0)
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED
    assert not maybe_committed(info.value) and is_retryable(info.value)
    assert _read(inner, b"k") is None
    assert db.injected == {**dict.fromkeys(FAULT_KINDS, 0), "not_committed": 1}


def test_too_old_does_not_commit(inner: Database) -> None:
    db = FaultyDatabase(inner, too_old=1.0, read_too_old=0.0)
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == TRANSACTION_TOO_OLD
    assert _read(inner, b"k") is None
    assert db.injected["too_old"] == 1


def test_read_only_commits_are_never_faulted(inner: Database) -> None:
    db = FaultyDatabase(inner, not_committed=1.0, read_too_old=0.0)
    tr = db.create_transaction()
    assert tr.get(b"k") is None
    tr.add_read_conflict_key(b"k")
    tr.commit()
    assert db.commits_drawn == 0
    assert db.total_injected == 0


@pytest.mark.parametrize(
    "write",
    [
        lambda tr: tr.clear(b"x"),
        lambda tr: tr.clear_range(b"a", b"b"),
        lambda tr: tr.add(b"n", b"\x01"),
        lambda tr: tr.max(b"n", b"\x01"),
        lambda tr: tr.min(b"n", b"\x01"),
        lambda tr: tr.add_write_conflict_key(b"w"),
        lambda tr: tr.add_write_conflict_range(b"a", b"b"),
        lambda tr: tr.set_versionstamped_value(b"v", b"\x00" * 10 + b"\x00\x00\x00\x00"),
        lambda tr: tr.set_versionstamped_key(b"p" + b"\x00" * 10 + b"\x01\x00\x00\x00", b"v"),
    ],
)
def test_every_kind_of_write_makes_a_commit_faultable(inner: Database, write: object) -> None:
    db = FaultyDatabase(inner, not_committed=1.0)
    tr = db.create_transaction()
    write(tr)  # type: ignore[operator]
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED


# -- reads ---------------------------------------------------------------------------------------
def test_reads_age_into_1007(inner: Database) -> None:
    db = FaultyDatabase(inner, read_too_old=1.0)
    tr = db.create_transaction()
    for read in (
        lambda: tr.get(b"k"),
        lambda: tr.get_range(b"a", b"z"),
        lambda: tr.snapshot.get(b"k"),
        lambda: tr.snapshot.get_range(b"a", b"z", limit=1, reverse=True),
        lambda: tr[b"k"],
    ):
        with pytest.raises(KVError) as info:
            read()
        assert info.value.code == TRANSACTION_TOO_OLD
    assert db.injected["read_too_old"] == 5


def test_read_rate_defaults_to_a_quarter_of_too_old(inner: Database) -> None:
    db = FaultyDatabase(inner, too_old=0.4)
    assert db.read_too_old == pytest.approx(0.1)
    assert FaultyDatabase(inner).read_too_old == 0.0


def test_reads_see_the_inner_data(inner: Database) -> None:
    inner.transact(_write, b"b", b"2")
    inner.transact(_write, b"a", b"1")
    db = FaultyDatabase(inner)
    tr = db.create_transaction()
    assert tr.get(b"a") == b"1"
    assert tr.get_range(b"a", b"z") == [(b"a", b"1"), (b"b", b"2")]
    assert tr.snapshot.get_range(b"a", b"z", reverse=True, limit=1) == [(b"b", b"2")]
    assert tr.snapshot.get(b"b") == b"2"
    tr.set(b"c", b"3")
    assert tr.get_range_startswith(b"c") == [(b"c", b"3")]  # read-your-writes
    assert tr.get_read_version() >= 0


# -- versionstamps -------------------------------------------------------------------------------
def _stamped(tr: Transaction) -> None:
    tr.set_versionstamped_value(b"v", b"\x00" * 10 + b"\x00\x00\x00\x00")


def test_versionstamp_without_faults(inner: Database) -> None:
    db = FaultyDatabase(inner)
    tr = db.create_transaction()
    _stamped(tr)
    stamp = tr.get_versionstamp()
    tr.commit()
    assert len(stamp.wait()) == 10


@pytest.mark.parametrize(
    ("rates", "code"),
    [({"unknown_result": 1.0}, COMMIT_UNKNOWN_RESULT), ({"not_committed": 1.0}, NOT_COMMITTED)],
)
def test_versionstamp_fails_with_the_injected_error(
    inner: Database, rates: dict[str, Any], code: int
) -> None:
    db = FaultyDatabase(inner, **rates)
    tr = db.create_transaction()
    _stamped(tr)
    stamp = tr.get_versionstamp()
    with pytest.raises(KVError):
        tr.commit()
    with pytest.raises(KVError) as info:
        stamp.wait()
    assert info.value.code == code


# -- the retry loop ------------------------------------------------------------------------------
def _increment(tr: Transaction) -> None:
    tr.add(b"counter", (1).to_bytes(8, "little"))


def _counter(db: Database) -> int:
    value = _read(db, b"counter")
    return int.from_bytes(value or b"", "little")


def test_non_idempotent_retries_double_work_after_1021(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=7, unknown_result=0.4, not_committed=0.2)
    for _ in range(40):
        db.transact(_increment)
    assert db.injected["unknown_result"] > 0 and db.injected["not_committed"] > 0
    # every injected 1021 had really committed, and the retry added once more
    assert _counter(inner) == 40 + db.injected["unknown_result"]


def test_idempotent_retries_do_not(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=7, unknown_result=0.4, not_committed=0.2)

    def once(tr: Transaction, key: bytes) -> None:
        marker = b"done/" + key
        if tr.get(marker) is not None:
            return
        tr.set(marker, b"")
        _increment(tr)

    for i in range(40):
        db.transact(once, str(i).encode())
    assert db.injected["unknown_result"] > 0
    assert _counter(inner) == 40


def test_transact_retries_read_faults(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=3, read_too_old=0.3, too_old=0.3)
    for _ in range(20):
        db.transact(lambda tr: tr.set(b"seen", tr.get(b"seen") or b"x"))
    assert db.injected["read_too_old"] > 0 and db.injected["too_old"] > 0
    assert _read(inner, b"seen") == b"x"


def test_on_error_honours_the_retry_limit(inner: Database) -> None:
    db = FaultyDatabase(inner, not_committed=1.0)
    tr = db.create_transaction()
    tr.options.set_retry_limit(2)
    assert inner is not db and tr.options is tr.inner.options  # options are the inner's
    raised = 0
    with pytest.raises(KVError) as info:
        while True:
            tr.set(b"k", b"v")
            try:
                tr.commit()
            except KVError as error:
                raised += 1
                tr.on_error(error)
    assert info.value.code == NOT_COMMITTED
    assert raised == 3
    assert db.injected["not_committed"] == 3


def test_on_error_raises_what_is_not_retryable(inner: Database) -> None:
    db = FaultyDatabase(inner)
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        tr.on_error(KVError(2000))
    assert info.value.code == 2000
    with pytest.raises(ZeroDivisionError):
        tr.on_error(ZeroDivisionError())


def test_on_error_resets_the_inner_transaction(inner: Database) -> None:
    db = FaultyDatabase(inner, not_committed=1.0)
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    tr.on_error(info.value)
    assert tr.get(b"k") is None  # the buffered write is gone
    db.set_rates(not_committed=0.0)
    tr.commit()  # nothing written: a read-only commit
    assert _read(inner, b"k") is None


def test_transactional_decorator_accepts_the_wrapper(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=1, not_committed=0.5)

    @kv.transactional
    def put(tr: Transaction, key: bytes, value: bytes) -> None:
        tr.set(key, value)

    for i in range(10):
        put(db, b"k%d" % i, b"v")
    assert db.injected["not_committed"] > 0
    assert len(inner.transact(lambda tr: tr.get_range(b"k", b"l"))) == 10


# -- seeds, counters, run-time control -----------------------------------------------------------
def _outcomes(inner: Database, seed: int, n: int = 60) -> list[int]:
    db = FaultyDatabase(inner, seed=seed, not_committed=0.2, unknown_result=0.2, too_old=0.2)
    out = []
    for i in range(n):
        tr = db.create_transaction()
        tr.set(b"s%d" % i, b"v")
        try:
            tr.commit()
            out.append(0)
        except KVError as error:
            out.append(error.code)
    return out


def test_seeded_runs_are_reproducible(inner: Database) -> None:
    first = _outcomes(inner, seed=42)
    assert first == _outcomes(inner, seed=42)
    assert first != _outcomes(inner, seed=43)
    assert {0, NOT_COMMITTED, COMMIT_UNKNOWN_RESULT, TRANSACTION_TOO_OLD} <= set(first)


def test_counters_match_the_errors_seen(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=5, not_committed=0.25, unknown_result=0.25, too_old=0.25,
                        read_too_old=0.0)
    seen = dict.fromkeys(FAULT_KINDS, 0)
    kinds = {NOT_COMMITTED: "not_committed", COMMIT_UNKNOWN_RESULT: "unknown_result",
             TRANSACTION_TOO_OLD: "too_old"}
    n = 400
    for i in range(n):
        tr = db.create_transaction()
        tr.set(b"c%d" % i, b"v")
        try:
            tr.commit()
        except KVError as error:
            seen[kinds[error.code]] += 1
    assert seen == db.injected
    assert db.commits_drawn == n
    for kind in ("not_committed", "unknown_result", "too_old"):
        assert 50 < db.injected[kind] < 150, db.injected  # about n / 4 each
    db.reset_counters()
    assert db.total_injected == 0 and db.commits_drawn == 0


def test_paused_and_set_rates(inner: Database) -> None:
    db = FaultyDatabase(inner, not_committed=1.0)
    with db.paused():
        with db.paused():
            db.transact(_write, b"a", b"1")
        db.transact(_write, b"b", b"2")
    assert db.total_injected == 0 and db.commits_drawn == 0
    tr = db.create_transaction()
    tr.set(b"c", b"3")
    with pytest.raises(KVError):
        tr.commit()
    db.set_rates(not_committed=0.0, unknown_result=1.0)
    tr = db.create_transaction()
    tr.set(b"c", b"3")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == COMMIT_UNKNOWN_RESULT
    db.set_rates(unknown_result=0.0)
    db.transact(_write, b"d", b"4")
    assert db.injected["not_committed"] == 1 and db.injected["unknown_result"] == 1
    assert [k for k, _ in inner.transact(lambda tr: tr.get_range(b"a", b"z"))] == [
        b"a", b"b", b"c", b"d"
    ]


@pytest.mark.parametrize(
    "rates",
    [
        {"not_committed": -0.1},
        {"unknown_result": 1.5},
        {"too_old": math.nan},
        {"read_too_old": 2.0},
        {"not_committed": 0.6, "unknown_result": 0.5},
    ],
)
def test_rates_are_validated(inner: Database, rates: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultyDatabase(inner, **rates)
    db = FaultyDatabase(inner)
    with pytest.raises(ValueError):
        db.set_rates(**rates)
    assert (db.not_committed, db.unknown_result, db.too_old) == (0.0, 0.0, 0.0)


def test_inner_must_be_a_database() -> None:
    with pytest.raises(TypeError):
        FaultyDatabase(object())  # type: ignore[arg-type]


def test_delegation_of_url_close_and_wait(inner: Database) -> None:
    db = FaultyDatabase(inner)
    assert db.url == inner.url == "memory://"
    assert db.inner is inner
    db.wait_for_change(0.01)
    with db:
        pass  # __exit__ closes the inner database
    with pytest.raises(KVError):
        inner.create_transaction().get(b"k")


def test_injected_faults_pickle() -> None:
    error = InjectedFault(COMMIT_UNKNOWN_RESULT)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, InjectedFault)
    assert copy.code == COMMIT_UNKNOWN_RESULT and str(copy) == str(error)


def test_threads_share_one_generator_safely(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=11, unknown_result=0.2, not_committed=0.2)
    calls = 25

    def worker() -> None:
        for _ in range(calls):
            db.transact(_increment)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.injected["unknown_result"] > 0
    assert _counter(inner) == 4 * calls + db.injected["unknown_result"]


# -- the faults FoundationDB has and the first version lacked (issue 8 item 11) ---------------
def test_unknown_result_without_a_commit(inner: Database) -> None:
    db = FaultyDatabase(inner, unknown_not_committed=1.0)
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == COMMIT_UNKNOWN_RESULT and maybe_committed(info.value)
    assert _read(inner, b"k") is None  # 1021, and nothing happened
    assert db.log == [("unknown_not_committed", False)]


def test_reads_fail_with_future_version_and_retry(inner: Database) -> None:
    db = FaultyDatabase(inner, read_future_version=1.0)
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert info.value.code == 1009 and is_retryable(info.value)
    with pytest.raises(KVError):
        tr.snapshot.get_many([b"a", b"b", b"c"])
    db.set_rates(read_future_version=0.5)
    assert db.transact(lambda tr: tr.get(b"k")) is None  # the retry loop gets through


def test_timeouts_are_not_retried_by_on_error_but_are_transient(inner: Database) -> None:
    db = FaultyDatabase(inner, read_timed_out=1.0)
    with pytest.raises(KVError) as info:
        db.transact(lambda tr: tr.get(b"k"))
    assert info.value.code == 1031 and not is_retryable(info.value)
    assert is_transient(info.value)
    assert db.injected["read_timed_out"] == 1  # one attempt: FoundationDB does not retry it


def test_a_timed_out_commit_may_or_may_not_have_committed(inner: Database) -> None:
    db = FaultyDatabase(inner, seed=11, timed_out=1.0)
    for i in range(40):
        tr = db.create_transaction()
        tr.set(b"t%02d" % i, b"v")
        with pytest.raises(KVError) as info:
            tr.commit()
        assert info.value.code == 1031
    committed = [c for kind, c in db.log if kind == "timed_out"]
    stored = inner.transact(lambda tr: tr.get_range(b"t", b"u"))
    assert len(stored) == sum(committed)
    assert 0 < sum(committed) < 40  # both outcomes happen


def test_fdb_like_rates_total_about_a_quarter(inner: Database) -> None:
    commits = sum(DEFAULT_RATES[k] for k in COMMIT_KINDS)
    reads = sum(DEFAULT_RATES[k] for k in READ_KINDS)
    assert 0.2 <= commits <= 0.3 and 0.2 <= reads <= 0.3
    db = FaultyDatabase.fdb_like(inner, seed=3)
    for i in range(300):
        tr = db.create_transaction()
        tr.set(b"f%03d" % i, b"v")
        with contextlib.suppress(KVError):
            tr.commit()
    assert 40 < db.total_injected < 120, db.injected
    assert all(db.injected[k] for k in COMMIT_KINDS)


def _run(inner: Database, seed: int) -> list[tuple[str, bool]]:
    db = FaultyDatabase.fdb_like(inner, seed=seed)
    for i in range(200):
        with contextlib.suppress(KVError):
            db.transact(lambda tr, i=i: tr.set(b"r%03d" % i, tr.get(b"r%03d" % i) or b"v"))
    return db.log


def test_the_same_seed_replays_the_same_faults() -> None:
    logs = []
    for seed in (7, 7, 8):
        with kv.open("memory://") as fresh:
            logs.append(_run(fresh, seed))
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]
    assert {kind for kind, _ in logs[0]} >= {"not_committed", "read_future_version"}


def test_injected_commit_timeouts_leave_the_outcome_unknown(inner: Database) -> None:
    from quick_queue.kv.errors import outcome_unknown

    db = FaultyDatabase(inner, timed_out=1.0)
    tr = db.create_transaction()
    tr.set(b"k", b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert outcome_unknown(info.value)
    db = FaultyDatabase(inner, read_timed_out=1.0)
    with pytest.raises(KVError) as info:
        db.create_transaction().get(b"k")
    assert not outcome_unknown(info.value)
