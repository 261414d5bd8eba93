"""Issue 14's adapter bugs, shown without a cluster: the binding's objects are stood in for by
``fdb_standin`` (the contract suite runs the same adapter against a live cluster when one is
reachable)."""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import pytest

import quick_queue.kv as kv
import quick_queue.kv.fdb as fdb_adapter
from quick_queue.kv.errors import (
    KVError,
    is_retryable,
    is_transient,
    is_unreachable,
    maybe_committed,
)
from quick_queue.kv.fdb import (
    CHANGE_KEY,
    FDBDatabase,
    FDBTransaction,
    kv_error_from_fdb,
    open_fdb,
    wrap_database,
    wrap_transaction,
)
from quick_queue.kv.fdb_load import binding_api_version
from tests.kv.fdb_standin import Database, FDBError, Transaction


# -- 1. the 7.1 binding has no LATEST_API_VERSION ----------------------------------------------
def test_the_71_binding_is_read_from_its_release_not_latest_api_version() -> None:
    binding_71 = types.SimpleNamespace(__version__="7.1.61")  # no LATEST_API_VERSION in 7.1
    assert binding_api_version(binding_71) == 710
    assert binding_api_version(types.SimpleNamespace(LATEST_API_VERSION=730)) == 730


# -- 3. the user's own transaction sees the binding's own errors --------------------------------
def _user_retry_loop(raw: Transaction, body: Any) -> int:
    """What ``@fdb.transactional`` does: retry on ``FDBError`` through ``tr.on_error``."""
    attempts = 0
    while True:
        attempts += 1
        try:
            body(raw)
            raw.commit().wait()
            return attempts
        except FDBError as error:
            raw.on_error(error.code).wait()


def test_errors_of_our_reads_in_a_users_transaction_stay_fdb_errors() -> None:
    raw = Transaction()
    raw.read_errors = [FDBError(1007)]  # the first read is too old, as after a slow step

    @kv.transactional
    def enqueue_like(tr: kv.Transaction) -> None:
        tr.get(b"marker")  # our read inside the user's transaction
        tr.set(b"job", b"1")

    assert _user_retry_loop(raw, enqueue_like) == 2  # retried, not aborted
    assert raw.on_error_args == [1007]
    tr = wrap_transaction(Transaction())
    tr.raw.read_errors = [FDBError(1009)]
    with pytest.raises(FDBError) as info:
        tr.get_many([b"k"])
    assert not isinstance(info.value, KVError) and info.value.code == 1009


def test_errors_of_our_own_transactions_are_kv_errors() -> None:
    tr = wrap_database(Database()).create_transaction()
    tr.raw.read_errors = [FDBError(1009)]
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert info.value.code == 1009 and isinstance(info.value.__cause__, FDBError)


def test_on_error_accepts_the_bindings_error_from_a_user_owned_transaction() -> None:
    raw = Transaction()
    tr = wrap_transaction(raw)
    tr.on_error(FDBError(1020))
    assert raw.on_error_args[-1].code == 1020


# -- 4. one classification, FoundationDB's ---------------------------------------------------
RETRYABLE = (1007, 1009, 1020, 1021, 1037, 1038, 1039, 1042, 1051, 1078, 1213, 1223, 1235, 1242)


@pytest.mark.parametrize("code", RETRYABLE)
def test_the_embedded_table_is_fdbs_retryable_set(code: int) -> None:
    assert is_retryable(KVError(code))


@pytest.mark.parametrize("code", [1021, 1039])
def test_maybe_committed_is_1021_and_1039(code: int) -> None:
    assert maybe_committed(KVError(code))


@pytest.mark.parametrize("code", [1020, 1007, 1031, 1025, 2000, 2101, 1510])
def test_other_codes_are_not_maybe_committed(code: int) -> None:
    assert not maybe_committed(KVError(code))


def test_on_fdb_the_bindings_predicates_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    says = types.SimpleNamespace(
        is_retryable=lambda error: error.code == 4242,
        is_maybe_committed=lambda error: error.code == 4242,
    )
    monkeypatch.setitem(sys.modules, "fdb", types.SimpleNamespace(predicates=says))
    novel = kv_error_from_fdb(FDBError(4242))  # a code a newer binding knows and we do not
    assert is_retryable(novel) and maybe_committed(novel)
    assert not is_retryable(kv_error_from_fdb(FDBError(1020)))  # the binding said no
    assert is_retryable(FDBError(4242))  # a raw FDBError is asked about the same way


# -- 5. timeouts, transient errors, an unreachable cluster -------------------------------------
def test_1031_is_transient_for_loops_but_not_retryable_as_in_fdb() -> None:
    timed_out = KVError(1031)
    assert not is_retryable(timed_out)
    assert is_transient(timed_out)
    assert is_transient(KVError(1020)) and not is_transient(KVError(2000))
    assert not is_transient(ValueError("x"))


def test_a_timeout_before_any_answer_is_marked_unreachable() -> None:
    tr = FDBTransaction(Transaction())
    tr.raw.read_errors = [FDBError(1031)]
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert is_unreachable(info.value) and is_transient(info.value)
    assert "unreachable" in str(info.value) and info.value.code == 1031
    tr = FDBTransaction(Transaction())
    tr.get(b"k")  # the cluster answered this transaction
    tr.raw.read_errors = [FDBError(1031)]
    with pytest.raises(KVError) as info:
        tr.get(b"k")
    assert not is_unreachable(info.value) and is_transient(info.value)


def test_open_sets_a_database_wide_transaction_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = Database()
    binding = types.SimpleNamespace(open=lambda cluster_file: raw)
    monkeypatch.setattr(fdb_adapter, "load_fdb", lambda: binding)
    monkeypatch.setattr(fdb_adapter, "_CLIENT_PID", [])
    db = open_fdb("/etc/foundationdb/fdb.cluster", connect_timeout=0)
    assert raw.options.calls == [("set_transaction_timeout", (10_000,))]
    assert db.url == "fdb:///etc/foundationdb/fdb.cluster"


def test_our_transactions_on_a_users_database_get_the_timeout_per_transaction() -> None:
    raw = Database()
    db = wrap_database(raw)
    db.create_transaction()
    assert raw.options.calls == []  # the user's database options are left alone
    assert raw.created[0].options.calls == [("set_timeout", (10_000,))]


# -- 2. a wrapped raw database remembers its cluster file --------------------------------------
def test_a_wrapped_database_names_the_cluster_file_it_was_opened_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, other = Database(), Database()
    opened = {"/srv/fdb/fdb.cluster": raw, None: other}
    monkeypatch.setitem(sys.modules, "fdb.impl", types.SimpleNamespace(open_databases=opened))
    monkeypatch.delenv("FDB_CLUSTER_FILE", raising=False)
    assert wrap_database(raw).url == "fdb:///srv/fdb/fdb.cluster"
    monkeypatch.setenv("FDB_CLUSTER_FILE", "/etc/custom/fdb.cluster")
    assert wrap_database(other).url == "fdb:///etc/custom/fdb.cluster"


# -- read-only, idle wake-ups, time ------------------------------------------------------------
def test_a_read_only_fdb_database_refuses_writes() -> None:
    db = FDBDatabase(Database(), read_only=True)
    tr = db.create_transaction()
    assert tr.get(b"k") is None
    with pytest.raises(KVError, match="read-only"):
        tr.set(b"k", b"v")


def test_wait_for_change_wakes_on_notify_change() -> None:
    raw = Database()
    db = wrap_database(raw)
    started = time.monotonic()
    db.wait_for_change(0.01)  # nothing changed: the timeout
    assert len(raw.watches) == 1 and raw.watches[0][0] == CHANGE_KEY
    woke = threading.Event()

    def waiter() -> None:
        db.wait_for_change(30.0)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    started = time.monotonic()
    tr = db.create_transaction()
    db.notify_change(tr)
    assert tr.raw.log == [("add", (CHANGE_KEY, (1).to_bytes(8, "little")))]
    tr.commit()
    assert woke.wait(10.0)
    thread.join()
    assert time.monotonic() - started < 10.0
    db.wait_for_change(0.0)  # a fired watch is renewed
    assert len(raw.watches) == 1


def test_store_time_of_an_fdb_database_is_the_injected_clock() -> None:
    class Fixed:
        def now(self) -> float:
            return 1_900_000_000.0

    assert FDBDatabase(Database(), clock=Fixed()).store_time() == 1_900_000_000.0


def test_a_database_says_whether_a_forked_child_may_reopen_it() -> None:
    assert not wrap_database(Database()).reopen_after_fork  # FoundationDB: spawn children
    with kv.open("memory://") as db:
        assert db.reopen_after_fork
        from quick_queue.kv.faults import FaultyDatabase

        assert FaultyDatabase(db).reopen_after_fork
    assert not FaultyDatabase(wrap_database(Database())).reopen_after_fork


def test_a_failed_watch_is_no_change_and_does_not_spin() -> None:
    raw = Database()
    raw.failing_watches = FDBError(1031)  # every watch fails at once: no answer from the cluster
    db = wrap_database(raw)
    started = time.monotonic()
    db.wait_for_change(0.05)
    assert time.monotonic() - started >= 0.04  # waited out its timeout: no busy loop
    raw.failing_watches = None
    db.wait_for_change(0.0)  # the failed watch was dropped: a new one is set
    assert len(raw.watches) == 1


def test_a_forked_child_gets_a_clear_error_instead_of_hanging() -> None:
    import os

    db = wrap_database(Database())
    db.create_transaction()  # fine in the process that opened it
    pid = os.fork()
    if pid == 0:  # the child: FoundationDB's client does not survive fork()
        code = 1
        try:
            db.create_transaction()
        except KVError as error:
            code = 7 if "spawn" in str(error) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


def test_opening_fdb_in_a_forked_child_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    binding = types.SimpleNamespace(open=lambda cluster_file: Database())
    monkeypatch.setattr(fdb_adapter, "load_fdb", lambda: binding)
    monkeypatch.setattr(fdb_adapter, "_CLIENT_PID", [])
    open_fdb(None, connect_timeout=0)  # this process starts the client
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            open_fdb(None, connect_timeout=0)
        except KVError as error:
            code = 7 if "spawn" in str(error) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7


def test_a_timeout_at_commit_leaves_the_outcome_unknown_one_at_a_read_does_not() -> None:
    from quick_queue.kv.errors import outcome_unknown

    tr = FDBTransaction(Transaction())
    tr.raw.read_errors = [FDBError(1031)]
    with pytest.raises(KVError) as read_info:
        tr.get(b"k")
    assert not outcome_unknown(read_info.value)
    tr = FDBTransaction(Transaction())
    tr.set(b"k", b"v")
    tr.raw.commit_error = FDBError(1031)
    with pytest.raises(KVError) as commit_info:
        tr.commit()
    assert outcome_unknown(commit_info.value) and not maybe_committed(commit_info.value)
    assert outcome_unknown(KVError(1021)) and not outcome_unknown(KVError(1020))
