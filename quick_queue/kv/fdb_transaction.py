"""Our ``Transaction`` over the binding's ``fdb.Transaction``: plain values instead of futures,
``KVError`` instead of ``fdb.FDBError`` (classified by the binding's own predicates), and in a
transaction the user owns, the binding's errors left exactly as they are.

Why the last: a user's ``@fdb.transactional`` function that calls ``queue.enqueue(..., tr=tr)``
retries on ``fdb.FDBError`` only. Were our reads to raise a ``KVError`` there, a retryable
error (1007, 1009, a throttle) would escape the user's retry loop instead of being retried.
"""

from __future__ import annotations

from typing import Any, Literal

from quick_queue.kv.api import (
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    DESCRIPTIONS,
    NOT_YET_COMMITTED,
    TRANSACTION_TIMED_OUT,
    KVError,
)


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


def _predicate(error: Any, name: str) -> bool | None:
    import sys

    predicates = getattr(sys.modules.get("fdb"), "predicates", None)
    check = getattr(predicates, f"is_{name}", None)
    if check is None:
        return None
    try:
        return bool(check(error))
    except Exception:  # noqa: BLE001 - no C library to ask: the table in errors.py decides
        return None


def kv_error_from_fdb(error: Any) -> FDBKVError:
    """The ``KVError`` for an ``fdb.FDBError``: same code, the binding's description (ours when
    the binding cannot give one), the binding's own retry classification, the original kept
    as ``fdb_error``."""
    code = int(error.code)
    description: str | None
    try:
        raw = error.description
        description = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except Exception:  # noqa: BLE001 - the description needs the C library; fall back to ours
        description = None
    if not description:
        description = DESCRIPTIONS.get(code)
    mapped = FDBKVError(code, description, fdb_error=error)
    mapped.fdb_retryable = _predicate(error, "retryable")
    mapped.fdb_maybe_committed = _predicate(error, "maybe_committed")
    return mapped


class _Errors:
    """The error policy of one transaction: map (ours) or pass through (the user's), and mark
    a timeout before the cluster ever answered as "unreachable"."""

    __slots__ = ("answered", "user_owned")

    def __init__(self, user_owned: bool) -> None:
        self.user_owned = user_owned
        self.answered = False

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> Literal[False]:
        if error is None:
            return False
        if self.user_owned or not is_fdb_error(error):
            return False  # re-raised unchanged
        mapped = kv_error_from_fdb(error)
        if mapped.code == TRANSACTION_TIMED_OUT and not self.answered:
            mapped.unreachable = True
            mapped.description = (
                "no answer from the FoundationDB cluster before the transaction timed out "
                "(cluster unreachable?)"
            )
            mapped.args = (f"{mapped.description} ({mapped.code})",)
        raise mapped from error


def _values(values: list[Any]) -> list[bytes | None]:
    return [None if value is None else bytes(value) for value in values]


def _listed(result: Any) -> list[Any]:
    """A range read's key-value pairs, waited for: the binding's ``to_list`` where it has one
    (one call for the whole range), else by iterating."""
    to_list = getattr(result, "to_list", None)
    if to_list is None:
        return list(result)
    items: list[Any] = to_list()
    return items


class _FDBReadView(ReadView):
    """Reads of a transaction; ``tr.snapshot`` is one over the binding's snapshot reader."""

    __slots__ = ("_errors", "_reader")

    def __init__(self, reader: Any, errors: _Errors) -> None:
        self._reader = reader
        self._errors = errors

    def get(self, key: bytes) -> bytes | None:
        with self._errors:
            value = self._reader.get(key).value
        self._errors.answered = True
        return None if value is None else bytes(value)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        with self._errors:
            futures = [self._reader.get(key) for key in keys]  # all in flight before a wait
            values = _values([future.value for future in futures])
        self._errors.answered = True
        return values

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        with self._errors:
            items = _listed(self._reader.get_range(
                begin, end, limit=limit if limit > 0 else 0, reverse=reverse
            ))
        self._errors.answered = True
        return [(bytes(kv.key), bytes(kv.value)) for kv in items]

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        with self._errors:
            # the binding sends a range's first request when the range is made: every read
            # is in flight before the first wait
            pending = [
                self._reader.get_range(begin, end, limit=limit if limit > 0 else 0)
                for begin, end, limit in ranges
            ]
            results = [_listed(result) for result in pending]
        self._errors.answered = True
        return [[(bytes(kv.key), bytes(kv.value)) for kv in items] for items in results]


class _FDBVersionstamp(VersionstampFuture):
    """The binding's versionstamp future, which resolves only once its transaction commits:
    waited on before the commit was issued it would block forever, so that raises instead."""

    def __init__(self, future: Any, tr: FDBTransaction) -> None:
        self._future = future
        self._tr = tr

    def wait(self) -> bytes:
        if not self._tr._commit_issued and not self._future.is_ready():
            raise KVError(CLIENT_INVALID_OPERATION, NOT_YET_COMMITTED)
        with self._tr._errors:
            return bytes(self._future.value)


class FDBTransactionOptions(TransactionOptions):
    """``TransactionOptions`` that also set the option on the FoundationDB transaction. Any
    other ``set_*`` option of the binding (``set_priority_batch``...) is passed through."""

    def __init__(self, raw_options: Any, errors: _Errors | None = None) -> None:
        super().__init__()
        self._raw = raw_options
        self._errors = errors or _Errors(False)

    def set_timeout(self, milliseconds: int) -> None:
        super().set_timeout(milliseconds)
        with self._errors:
            self._raw.set_timeout(milliseconds)

    def set_retry_limit(self, retries: int) -> None:
        super().set_retry_limit(retries)
        with self._errors:
            self._raw.set_retry_limit(retries)

    def set_max_retry_delay(self, milliseconds: int) -> None:
        super().set_max_retry_delay(milliseconds)
        with self._errors:
            self._raw.set_max_retry_delay(milliseconds)

    def set_read_system_keys(self) -> None:
        super().set_read_system_keys()
        with self._errors:
            self._raw.set_read_system_keys()

    def set_access_system_keys(self) -> None:
        super().set_access_system_keys()
        with self._errors:
            self._raw.set_access_system_keys()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("set_") and not name.startswith("__"):
            option = getattr(self._raw, name)
            errors = self._errors

            def setter(*args: Any) -> None:
                with errors:
                    option(*args)

            return setter
        raise AttributeError(name)


class FDBTransaction(Transaction):
    """Our ``Transaction`` over an ``fdb.Transaction`` (``raw``). ``user_owned``: the user's own
    transaction (their retry loop; the binding's errors reach it unchanged). ``read_only``:
    writes are refused (a database opened read-only)."""

    def __init__(self, raw: Any, *, user_owned: bool = False, read_only: bool = False) -> None:
        self._tr = raw
        self._errors = _Errors(user_owned)
        self._read_only = read_only
        self._commit_issued = False
        self.options = FDBTransactionOptions(raw.options, self._errors)
        self.snapshot = _FDBReadView(raw.snapshot, self._errors)
        self._reads = _FDBReadView(raw, self._errors)

    @property
    def raw(self) -> Any:
        """The binding's ``fdb.Transaction``."""
        return self._tr

    @property
    def user_owned(self) -> bool:
        return self._errors.user_owned

    # -- reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        return self._reads.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._reads.get_many(keys)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self._reads.get_range(begin, end, limit=limit, reverse=reverse)

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        return self._reads.get_ranges(ranges)

    # -- writes -----------------------------------------------------------------------------
    def _write(self, name: str, *args: bytes) -> None:
        if self._read_only:
            raise KVError(
                CLIENT_INVALID_OPERATION,
                f"{name}: the database was opened read-only (open it without read_only to write)",
            )
        with self._errors:
            getattr(self._tr, name)(*args)

    def set(self, key: bytes, value: bytes) -> None:
        self._write("set", key, value)

    def clear(self, key: bytes) -> None:
        self._write("clear", key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._write("clear_range", begin, end)

    def add(self, key: bytes, param: bytes) -> None:
        self._write("add", key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self._write("max", key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self._write("min", key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._write("set_versionstamped_key", key, value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._write("set_versionstamped_value", key, value)

    def get_versionstamp(self) -> VersionstampFuture:
        with self._errors:
            return _FDBVersionstamp(self._tr.get_versionstamp(), self)

    # -- conflicts and versions -------------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        with self._errors:
            self._tr.add_read_conflict_range(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        with self._errors:
            self._tr.add_read_conflict_key(key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._write("add_write_conflict_range", begin, end)

    def add_write_conflict_key(self, key: bytes) -> None:
        self._write("add_write_conflict_key", key)

    def get_read_version(self) -> int:
        with self._errors:
            version = int(self._tr.get_read_version().wait())
        self._errors.answered = True
        return version

    def get_approximate_size(self) -> int:
        with self._errors:
            return int(self._tr.get_approximate_size().wait())

    def watch(self, key: bytes) -> Any:
        """The binding's watch future for ``key`` (active once this transaction commits)."""
        with self._errors:
            return self._tr.watch(key)

    # -- life cycle -------------------------------------------------------------------------
    def commit(self) -> None:
        self._commit_issued = True
        try:
            with self._errors:
                self._tr.commit().wait()
        except KVError as error:
            error.at_commit = True
            raise

    def reset(self) -> None:
        with self._errors:
            self._tr.reset()
        self._errors.answered = False
        self._commit_issued = False
        # FoundationDB's reset clears the transaction's options too.
        self.options = FDBTransactionOptions(self._tr.options, self._errors)

    def on_error(self, error: BaseException) -> None:
        """FoundationDB's own ``on_error`` (its backoff, retry limit and reset, options kept):
        given the original ``FDBError`` when ``error`` came from the binding, else the code of
        the ``KVError``. Raises ``error`` itself when it is not retryable (or retries ran out),
        and anything that is neither a ``KVError`` nor an ``FDBError`` unchanged."""
        if is_fdb_error(error):  # a user-owned transaction's error, as the binding raised it
            self._tr.on_error(error).wait()
            return
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
        self._errors.answered = False
        self._commit_issued = False

    def __repr__(self) -> str:
        return f"<FDBTransaction {self._tr!r}>"
