"""The FoundationDB adapter: ``fdb://`` URLs, and a raw ``fdb.Transaction`` / ``fdb.Database``
accepted wherever the queue takes a transaction or a database.

The ``fdb`` binding is imported lazily (inside functions only), so the rest of the package works
where no FoundationDB client library is installed. What this module smooths over:

* **Loading.** The binding passes its own header version to ``libfdb_c``, so binding 8.0 refuses a
  7.x library. ``open_fdb`` checks the library's maximum API version first and raises
  ``ClientLibraryMissing`` naming the binding to install (``pip install "foundationdb==7.3.*"``
  for a 7.x cluster). A missing library gets the same error type, with where to get it.
* **One API version per process.** ``fdb.api_version()`` may be called once; if the application
  already selected one, it is reused (it must be at least ``MIN_API_VERSION``).
* **Futures.** Reads return plain ``bytes`` / ``None`` / ``list[tuple[bytes, bytes]]``; every
  ``fdb.FDBError`` becomes a ``KVError`` with the same code (the original is its ``__cause__``
  and its ``fdb_error``, which ``on_error`` hands back to the real ``tr.on_error``).
* **A cluster that does not answer.** ``open_fdb`` does one read with a transaction timeout and
  raises ``KVError`` ("cannot reach the FoundationDB cluster described by ...") instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from quick_queue.kv.api import (
    Database,
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    DESCRIPTIONS,
    TRANSACTION_TIMED_OUT,
    ClientLibraryMissing,
    KVError,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "MIN_API_VERSION",
    "FDBDatabase",
    "FDBKVError",
    "FDBTransaction",
    "FDBTransactionOptions",
    "choose_api_version",
    "is_fdb_error",
    "kv_error_from_fdb",
    "open_fdb",
    "wrap_database",
    "wrap_transaction",
]

#: The oldest API version the adapter works with: 4-byte versionstamp offsets need 520, and the
#: ``timeout`` option survives ``on_error`` from 610 on (the retry loop relies on it).
MIN_API_VERSION = 610

#: Seconds ``open_fdb`` waits for the cluster to answer its first read.
DEFAULT_CONNECT_TIMEOUT = 5.0

_SEVEN_X_HINT = 'for a 7.x cluster: pip install "foundationdb==7.3.*"'

_API_LOCK = threading.Lock()


# -- errors ------------------------------------------------------------------------------------
class FDBKVError(KVError):
    """A ``KVError`` made from an ``fdb.FDBError``; ``fdb_error`` is the original (also the
    exception's ``__cause__``), kept so ``FDBTransaction.on_error`` can give it back to the
    binding's ``tr.on_error``."""

    def __init__(self, code: int, message: str | None = None, fdb_error: Any = None) -> None:
        super().__init__(code, message)
        self.fdb_error: Any = fdb_error


def is_fdb_error(error: BaseException) -> bool:
    """True for an ``fdb.FDBError`` (or a subclass), recognised without importing ``fdb``."""
    return any(
        cls.__name__ == "FDBError" and cls.__module__ == "fdb.impl" for cls in type(error).__mro__
    )


def kv_error_from_fdb(error: Any) -> FDBKVError:
    """The ``KVError`` for an ``fdb.FDBError``: same code, the binding's description (ours when
    the binding cannot give one), the original kept as ``fdb_error``."""
    code = int(error.code)
    description: str | None
    try:
        raw = error.description
        description = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except Exception:  # noqa: BLE001 - the description needs the C library; fall back to ours
        description = None
    if not description:
        description = DESCRIPTIONS.get(code)
    return FDBKVError(code, description, fdb_error=error)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """Turn an ``fdb.FDBError`` raised inside the block into a ``KVError``."""
    try:
        yield
    except Exception as error:
        if is_fdb_error(error):
            raise kv_error_from_fdb(error) from error
        raise


# -- loading the binding -----------------------------------------------------------------------
def _describe_cluster_file(cluster_file: str | None) -> str:
    if cluster_file:
        return cluster_file
    return (
        "the default cluster file ($FDB_CLUSTER_FILE, ./fdb.cluster or "
        "/etc/foundationdb/fdb.cluster)"
    )


def _missing_library_message(detail: str, binding_release: str) -> str:
    binding = f"foundationdb {binding_release}" if binding_release else "foundationdb"
    return (
        "The FoundationDB client library (libfdb_c) is not installed, so fdb:// databases "
        "cannot be opened. Install the FoundationDB client package matching your cluster from "
        "https://github.com/apple/foundationdb/releases (foundationdb-clients .deb/.rpm on "
        "Linux, the FoundationDB .pkg on macOS), or put libfdb_c on the library path. Its version "
        f"must match the Python binding (installed: {binding}; 8.0 needs an 8.0 client; "
        f"{_SEVEN_X_HINT} with a 7.3 client). The embedded engine (sqlite:///path.db) needs "
        f"nothing installed. (The binding said: {detail})"
    )


def choose_api_version(binding_version: int, library_max: int, binding_release: str = "") -> int:
    """The API version to select: the binding's own (``fdb.LATEST_API_VERSION``) unless the
    installed ``libfdb_c`` supports less. Since the binding passes its header version to the
    library, a library older than the binding cannot load at all: that raises
    ``ClientLibraryMissing`` saying which binding to install instead."""
    version = min(binding_version, library_max)
    if library_max < binding_version:
        major, minor = divmod(library_max // 10, 10)
        release = f" {binding_release}" if binding_release else ""
        install = f'pip install "foundationdb=={major}.{minor}.*"'
        also = "" if install in _SEVEN_X_HINT else f"; {_SEVEN_X_HINT}"
        raise ClientLibraryMissing(
            f"The installed FoundationDB client library (libfdb_c) supports API version "
            f"{library_max} at most, but the Python binding foundationdb{release} requires a "
            f"library that supports API version {binding_version}. Install the binding that "
            f"matches the library: {install}{also}; or upgrade libfdb_c to match the binding."
        )
    if version < MIN_API_VERSION:
        raise ClientLibraryMissing(
            f"FoundationDB API version {version} is too old for quick_queue (it needs "
            f"{MIN_API_VERSION} or later): install a newer client library and binding "
            f'({_SEVEN_X_HINT}).'
        )
    return version


def _load_fdb() -> Any:
    """Import ``fdb``, select its API version once per process, return the module."""
    try:
        import fdb  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:
        raise ClientLibraryMissing(
            "The FoundationDB Python binding is not installed: pip install foundationdb "
            f"(it also needs the client library libfdb_c; {_SEVEN_X_HINT}). The embedded engine "
            "(sqlite:///path.db) needs nothing installed."
        ) from error
    with _API_LOCK:
        if _api_version_selected(fdb):
            selected = int(fdb.get_api_version())
            if selected < MIN_API_VERSION:
                raise ClientLibraryMissing(
                    f"this process selected FoundationDB API version {selected}, but quick_queue "
                    f"needs {MIN_API_VERSION} or later (fdb.api_version() can be called once per "
                    "process: select a newer version, or let quick_queue select it)"
                )
            return fdb
        try:
            import fdb.impl  # type: ignore[import-untyped,unused-ignore]
        except Exception as error:  # the binding raises a bare Exception when dlopen fails
            raise ClientLibraryMissing(
                _missing_library_message(str(error), str(getattr(fdb, "__version__", "")))
            ) from error
        library_max = int(fdb.impl._capi.fdb_get_max_api_version())
        version = choose_api_version(
            int(fdb.LATEST_API_VERSION), library_max, str(getattr(fdb, "__version__", ""))
        )
        try:
            fdb.api_version(version)
        except RuntimeError as error:
            if _api_version_selected(fdb):  # selected meanwhile outside our lock: reuse it
                return fdb
            raise ClientLibraryMissing(
                f"cannot select FoundationDB API version {version}: {error} "
                f"({_SEVEN_X_HINT})"
            ) from error
    return fdb


def _api_version_selected(fdb: Any) -> bool:
    check = getattr(fdb, "is_api_version_selected", None)
    if check is not None:
        return bool(check())
    return "_version" in vars(fdb)


def open_fdb(
    cluster_file: str | None, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> FDBDatabase:
    """Open the FoundationDB cluster ``cluster_file`` describes (None: the default cluster file)
    and check it answers within ``connect_timeout`` seconds (0 skips the check)."""
    fdb = _load_fdb()
    where = _describe_cluster_file(cluster_file)
    try:
        raw = fdb.open(cluster_file)
    except Exception as error:
        if is_fdb_error(error):
            mapped = kv_error_from_fdb(error)
            raise FDBKVError(
                mapped.code,
                f"cannot open the FoundationDB cluster described by {where}: "
                f"{mapped.description}",
                fdb_error=error,
            ) from error
        raise
    db = FDBDatabase(raw, cluster_file)
    if connect_timeout > 0:
        _probe(raw, where, connect_timeout)
    return db


def _probe(raw_db: Any, where: str, timeout: float) -> None:
    """One bounded read: a cluster that does not answer fails here, not in the first job."""
    deadline = time.monotonic() + timeout
    tr = raw_db.create_transaction()
    tr.options.set_timeout(max(1, int(timeout * 1000)))
    while True:
        try:
            tr.get(b"\x00").wait()
            return
        except Exception as error:
            if not is_fdb_error(error):
                raise
            last = error
        try:
            if time.monotonic() >= deadline:
                raise last
            tr.on_error(last).wait()  # retryable errors back off until the timeout fires
        except Exception as error:
            if not is_fdb_error(error):
                raise
            mapped = kv_error_from_fdb(error)
            why = (
                f"no answer within {timeout:g} s"
                if mapped.code == TRANSACTION_TIMED_OUT
                else mapped.description
            )
            raise FDBKVError(
                mapped.code,
                f"cannot reach the FoundationDB cluster described by {where} ({why}); is the "
                "cluster running, and does the cluster file list its coordinators?",
                fdb_error=error,
            ) from error


# -- the adapter -------------------------------------------------------------------------------
def _get(reader: Any, key: bytes) -> bytes | None:
    with _mapped():
        value = reader.get(key).value
    return None if value is None else bytes(value)


def _get_many(reader: Any, keys: list[bytes]) -> list[bytes | None]:
    with _mapped():
        futures = [reader.get(key) for key in keys]  # all in flight before the first wait
        values = [future.value for future in futures]
    return [None if value is None else bytes(value) for value in values]


def _get_range(reader: Any, begin: bytes, end: bytes, limit: int, reverse: bool) -> list[KeyValue]:
    with _mapped():
        result = reader.get_range(begin, end, limit=limit if limit > 0 else 0, reverse=reverse)
        to_list = getattr(result, "to_list", None)
        items = to_list() if to_list is not None else list(result)
        return [(bytes(kv.key), bytes(kv.value)) for kv in items]


class _FDBReadView(ReadView):
    """``tr.snapshot``: reads that add no read conflicts."""

    __slots__ = ("_reader",)

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def get(self, key: bytes) -> bytes | None:
        return _get(self._reader, key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return _get_many(self._reader, keys)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return _get_range(self._reader, begin, end, limit, reverse)


class _FDBVersionstamp(VersionstampFuture):
    def __init__(self, future: Any) -> None:
        self._future = future

    def wait(self) -> bytes:
        with _mapped():
            return bytes(self._future.value)


class FDBTransactionOptions(TransactionOptions):
    """``TransactionOptions`` that also set the option on the FoundationDB transaction. Any
    other ``set_*`` option of the binding (``set_priority_batch``...) is passed through."""

    def __init__(self, raw_options: Any) -> None:
        super().__init__()
        self._raw = raw_options

    def set_timeout(self, milliseconds: int) -> None:
        super().set_timeout(milliseconds)
        with _mapped():
            self._raw.set_timeout(milliseconds)

    def set_retry_limit(self, retries: int) -> None:
        super().set_retry_limit(retries)
        with _mapped():
            self._raw.set_retry_limit(retries)

    def set_max_retry_delay(self, milliseconds: int) -> None:
        super().set_max_retry_delay(milliseconds)
        with _mapped():
            self._raw.set_max_retry_delay(milliseconds)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("set_") and not name.startswith("__"):
            option = getattr(self._raw, name)

            def setter(*args: Any) -> None:
                with _mapped():
                    option(*args)

            return setter
        raise AttributeError(name)


class FDBTransaction(Transaction):
    """Our ``Transaction`` over an ``fdb.Transaction`` (``raw``)."""

    def __init__(self, raw: Any) -> None:
        self._tr = raw
        self.options = FDBTransactionOptions(raw.options)
        self.snapshot = _FDBReadView(raw.snapshot)

    @property
    def raw(self) -> Any:
        """The binding's ``fdb.Transaction``."""
        return self._tr

    # -- reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        return _get(self._tr, key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return _get_many(self._tr, keys)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return _get_range(self._tr, begin, end, limit, reverse)

    # -- writes -----------------------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        with _mapped():
            self._tr.set(key, value)

    def clear(self, key: bytes) -> None:
        with _mapped():
            self._tr.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        with _mapped():
            self._tr.clear_range(begin, end)

    def add(self, key: bytes, param: bytes) -> None:
        with _mapped():
            self._tr.add(key, param)

    def max(self, key: bytes, param: bytes) -> None:
        with _mapped():
            self._tr.max(key, param)

    def min(self, key: bytes, param: bytes) -> None:
        with _mapped():
            self._tr.min(key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        with _mapped():
            self._tr.set_versionstamped_key(key, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        with _mapped():
            self._tr.set_versionstamped_value(key, value)

    def get_versionstamp(self) -> VersionstampFuture:
        with _mapped():
            return _FDBVersionstamp(self._tr.get_versionstamp())

    # -- conflicts and versions -------------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        with _mapped():
            self._tr.add_read_conflict_range(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        with _mapped():
            self._tr.add_read_conflict_key(key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        with _mapped():
            self._tr.add_write_conflict_range(begin, end)

    def add_write_conflict_key(self, key: bytes) -> None:
        with _mapped():
            self._tr.add_write_conflict_key(key)

    def get_read_version(self) -> int:
        with _mapped():
            return int(self._tr.get_read_version().wait())

    # -- life cycle -------------------------------------------------------------------------
    def commit(self) -> None:
        with _mapped():
            self._tr.commit().wait()

    def reset(self) -> None:
        with _mapped():
            self._tr.reset()
        # FoundationDB's reset clears the transaction's options too.
        self.options = FDBTransactionOptions(self._tr.options)

    def on_error(self, error: BaseException) -> None:
        """FoundationDB's own ``on_error`` (its backoff, retry limit and reset, options kept):
        given the original ``FDBError`` when ``error`` came from the binding, else the code of
        the ``KVError``. Raises ``error`` itself when it is not retryable (or retries ran out),
        and anything that is not a ``KVError`` unchanged."""
        if not isinstance(error, KVError):
            raise error
        fdb_error = getattr(error, "fdb_error", None)
        try:
            self._tr.on_error(fdb_error if fdb_error is not None else error.code).wait()
        except Exception as raised:
            if not is_fdb_error(raised):
                raise
            if int(getattr(raised, "code", -1)) == error.code:
                raise error from error.__cause__
            raise kv_error_from_fdb(raised) from raised

    def __repr__(self) -> str:
        return f"<FDBTransaction {self._tr!r}>"


class FDBDatabase(Database):
    """Our ``Database`` over an ``fdb.Database`` (``raw``)."""

    def __init__(self, raw: Any, cluster_file: str | None = None) -> None:
        self._db = raw
        self.cluster_file = cluster_file
        path = os.path.abspath(cluster_file) if cluster_file else ""
        self.url = f"fdb://{path}"
        self._closed = False

    @property
    def raw(self) -> Any:
        """The binding's ``fdb.Database``."""
        return self._db

    def create_transaction(self) -> FDBTransaction:
        if self._closed:
            raise KVError(CLIENT_INVALID_OPERATION, f"database {self.url} is closed")
        with _mapped():
            return FDBTransaction(self._db.create_transaction())

    def close(self) -> None:
        """The binding has no close (its network thread stops at exit): this only refuses new
        transactions from this object."""
        self._closed = True

    def __repr__(self) -> str:
        return f"<FDBDatabase {self.url}>"


def wrap_transaction(raw: Any) -> FDBTransaction:
    """A user's own ``fdb.Transaction`` as our ``Transaction``."""
    return FDBTransaction(raw)


def wrap_database(raw: Any) -> FDBDatabase:
    """A user's own ``fdb.Database`` as our ``Database`` (its cluster file is unknown: url
    ``fdb://``)."""
    return FDBDatabase(raw)
