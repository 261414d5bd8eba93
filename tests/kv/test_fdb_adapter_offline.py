"""The FoundationDB adapter without a cluster: the real behaviour where libfdb_c is missing, the
pure helpers, and the adapter's plumbing over a stand-in for the binding's objects (the contract
suite runs the adapter against a real cluster when one is reachable)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import as_database, as_transaction
from quick_queue.kv.errors import (
    CLIENT_LIBRARY_MISSING,
    DESCRIPTIONS,
    NOT_COMMITTED,
    ClientLibraryMissing,
    KVError,
)
from quick_queue.kv.fdb import (
    MIN_API_VERSION,
    FDBDatabase,
    FDBKVError,
    FDBTransaction,
    choose_api_version,
    is_fdb_error,
    kv_error_from_fdb,
    open_fdb,
    wrap_database,
)
from tests.kv.fdb_standin import Database, FDBError, Transaction


def _client_library_installed() -> bool:
    if ctypes.util.find_library("fdb_c") is not None:
        return True
    try:
        import fdb.impl  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to load means: not installed
        return False
    return True


no_client = pytest.mark.skipif(
    _client_library_installed(), reason="libfdb_c is installed here: nothing to report missing"
)


# -- the real behaviour without libfdb_c ---------------------------------------------------------
@no_client
@pytest.mark.parametrize("url", ["fdb://", "fdb:///etc/foundationdb/fdb.cluster"])
def test_open_without_the_client_library_says_what_to_install(url: str) -> None:
    with pytest.raises(ClientLibraryMissing) as info:
        kv.open(url)
    error = info.value
    assert isinstance(error, KVError)
    assert error.code == CLIENT_LIBRARY_MISSING
    message = str(error)
    assert "libfdb_c" in message
    assert "https://github.com/apple/foundationdb/releases" in message
    assert "foundationdb-clients" in message
    assert 'pip install "foundationdb==7.3.*"' in message
    assert "sqlite:///" in message
    assert error.__cause__ is not None  # the binding's own error


@no_client
def test_open_fdb_does_not_select_an_api_version_when_it_fails() -> None:
    import fdb  # type: ignore[import-untyped,unused-ignore]

    for _ in range(2):  # fails the same way every time, and leaves the binding untouched
        with pytest.raises(ClientLibraryMissing):
            open_fdb(None)
    assert not fdb.is_api_version_selected()


def test_the_fdb_module_is_not_imported_by_the_package() -> None:
    # importing quick_queue.kv (and the adapter module) must not need the binding
    import importlib

    importlib.import_module("quick_queue.kv.fdb")
    if "fdb" in sys.modules:
        assert "fdb.impl" not in sys.modules or _client_library_installed()


# -- picking the API version ----------------------------------------------------------------------
def test_choose_api_version_takes_the_bindings_own() -> None:
    assert choose_api_version(800, 800) == 800
    assert choose_api_version(730, 800) == 730  # a newer library speaks older versions


def test_choose_api_version_names_the_binding_for_an_older_library() -> None:
    with pytest.raises(ClientLibraryMissing) as info:
        choose_api_version(800, 730, "8.0.0")
    message = str(info.value)
    assert 'pip install "foundationdb==7.3.*"' in message
    assert "730" in message and "800" in message and "8.0.0" in message
    with pytest.raises(ClientLibraryMissing) as info:
        choose_api_version(800, 710)
    assert 'pip install "foundationdb==7.1.*"' in str(info.value)
    assert 'pip install "foundationdb==7.3.*"' in str(info.value)


def test_choose_api_version_refuses_too_old_versions() -> None:
    with pytest.raises(ClientLibraryMissing):
        choose_api_version(MIN_API_VERSION - 10, 800)




# -- error mapping ---------------------------------------------------------------------------------
def test_is_fdb_error_recognises_the_bindings_class_without_importing_it() -> None:
    assert is_fdb_error(FDBError(1020))
    assert not is_fdb_error(KVError(1020))
    assert not is_fdb_error(ValueError("x"))


def test_kv_error_from_fdb_keeps_the_code_and_the_original() -> None:
    original = FDBError(NOT_COMMITTED)
    error = kv_error_from_fdb(original)
    assert isinstance(error, KVError) and isinstance(error, FDBKVError)
    assert error.code == NOT_COMMITTED
    assert error.description == "stand-in description"
    assert error.fdb_error is original


def test_kv_error_from_fdb_falls_back_to_our_descriptions() -> None:
    class NoLibrary(FDBError):
        @property
        def description(self) -> bytes:
            raise OSError("no C library to describe it")

    error = kv_error_from_fdb(NoLibrary(NOT_COMMITTED))
    assert error.description == DESCRIPTIONS[NOT_COMMITTED]
    assert error.code == NOT_COMMITTED


# -- the adapter over the stand-in -----------------------------------------------------------------
def test_reads_return_plain_values() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    tr.set(b"b", b"2")
    tr[b"a"] = b"1"
    assert tr.get(b"a") == b"1" and type(tr.get(b"a")) is bytes
    assert tr.get(b"zz") is None
    assert tr[b"b"] == b"2"
    assert tr.get_range(b"a", b"z") == [(b"a", b"1"), (b"b", b"2")]
    assert tr.get_range(b"a", b"z", limit=1, reverse=True) == [(b"b", b"2")]
    assert tr.snapshot.get(b"a") == b"1"
    assert tr.snapshot.get_range_startswith(b"a") == [(b"a", b"1")]
    del tr[b"a"]
    assert tr.get(b"a") is None
    assert tr.get_read_version() == 1234


def test_writes_and_conflict_ranges_are_forwarded() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    tr.clear_range(b"a", b"b")
    tr.add(b"n", b"\x01")
    tr.max(b"n", b"\x02")
    tr.min(b"n", b"\x03")
    tr.set_versionstamped_key(b"k", b"v")
    tr.set_versionstamped_value(b"k", b"v")
    tr.add_read_conflict_range(b"a", b"b")
    tr.add_read_conflict_key(b"c")
    tr.add_write_conflict_range(b"d", b"e")
    tr.add_write_conflict_key(b"f")
    assert [name for name, _ in raw.log] == [
        "clear_range", "add", "max", "min", "set_versionstamped_key",
        "set_versionstamped_value", "add_read_conflict_range", "add_read_conflict_key",
        "add_write_conflict_range", "add_write_conflict_key",
    ]
    assert raw.log[1] == ("add", (b"n", b"\x01"))


def test_errors_become_kv_errors_with_the_original_kept() -> None:
    tr = FDBTransaction(Transaction())
    with pytest.raises(KVError) as info:
        tr.get(b"\xff/system")
    assert info.value.code == 2004
    assert isinstance(info.value.__cause__, FDBError)
    with pytest.raises(KVError):
        tr.snapshot.get(b"\xff")


def test_commit_and_on_error_go_through_the_binding() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    tr.commit()
    original = FDBError(NOT_COMMITTED)
    raw.commit_error = original
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED
    tr.on_error(info.value)
    assert raw.on_error_args == [original]  # the binding got its own error back
    tr.on_error(KVError(1021))  # ours: handed over by code
    assert raw.on_error_args[-1] == 1021


def test_on_error_raises_the_error_itself_when_not_retryable() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    error = KVError(2000, "not retryable")
    with pytest.raises(KVError) as info:
        tr.on_error(error)
    assert info.value is error
    with pytest.raises(RuntimeError):
        tr.on_error(RuntimeError("not a KVError"))
    assert len(raw.on_error_args) == 1


def test_options_are_forwarded_and_validated() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    tr.options.set_timeout(250)
    tr.options.set_retry_limit(3)
    tr.options.set_max_retry_delay(50)
    tr.options.set_priority_batch()  # type: ignore[attr-defined]  # passed through
    assert raw.options.calls == [
        ("set_timeout", (250,)), ("set_retry_limit", (3,)), ("set_max_retry_delay", (50,)),
        ("set_priority_batch", ()),
    ]
    assert (tr.options.timeout_ms, tr.options.retry_limit) == (250, 3)
    with pytest.raises(KVError):
        tr.options.set_timeout(-1)
    with pytest.raises(AttributeError):
        tr.options.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_reset_renews_the_options() -> None:
    raw = Transaction()
    tr = FDBTransaction(raw)
    tr.options.set_timeout(250)
    tr.reset()
    assert raw.resets == 1
    assert tr.options.timeout_ms == 0
    tr.options.set_timeout(10)
    assert raw.options.calls == [("set_timeout", (10,))]


def test_versionstamp_future() -> None:
    tr = FDBTransaction(Transaction())
    stamp = tr.get_versionstamp()
    with pytest.raises(KVError, match="before commit"):  # the binding's wait would hang
        stamp.wait()
    tr.commit()
    assert stamp.wait() == b"\x00" * 9 + b"\x01"


def test_database_wrapper() -> None:
    raw = Database()
    db = wrap_database(raw)
    assert isinstance(db, FDBDatabase) and db.url == "fdb://" and db.raw is raw
    assert FDBDatabase(raw, "/etc/foundationdb/fdb.cluster").url == (
        "fdb:///etc/foundationdb/fdb.cluster"
    )
    assert db.transact(lambda tr: tr.get(b"a")) is None
    assert isinstance(raw.created[0], Transaction)
    db.close()
    with pytest.raises(KVError):
        db.create_transaction()


def test_raw_binding_objects_are_accepted_by_the_seam() -> None:
    raw_tr = Transaction()
    tr = as_transaction(raw_tr)
    assert isinstance(tr, FDBTransaction) and tr.raw is raw_tr
    assert isinstance(as_database(Database()), FDBDatabase)

    @kv.transactional
    def put(tr: kv.Transaction, key: bytes) -> None:
        tr.set(key, b"x")

    put(raw_tr, b"k")  # joins the user's own transaction: no commit
    assert raw_tr.store == {b"k": b"x"}
