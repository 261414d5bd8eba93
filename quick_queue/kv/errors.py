"""Errors of the key-value layer, with FoundationDB's numeric codes.

Both engines raise the same type so the layers above handle one thing::

    QuickQueueError              root of every error quick_queue raises on purpose
     ├── ConfigurationError      (ValueError) a database URL or option that cannot work
     └── KVError                 .code is FoundationDB's error code
          ├── StorageError       the file behind the embedded engine is unusable
          │    │                 (corrupt, read-only, disk full); .path names it
          │    └── ForeignDatabase  a SQLite file of another application (open(adopt=True))
          └── ClientLibraryMissing  fdb: URL, but the FoundationDB client is not installed

``QuickQueueError`` and ``ConfigurationError`` live here, at the bottom of the package, so the
storage layer can raise them; ``quick_queue.errors`` re-exports both and hangs the queue's own
errors under them.

The predicates mirror FoundationDB's ``fdb_error_predicate``: ``is_retryable`` says the retry
loop may run the transaction again, ``maybe_committed`` says the last commit may have taken
effect even though it raised (1021), so a retry must be idempotent.
"""

from __future__ import annotations

NOT_COMMITTED = 1020
COMMIT_UNKNOWN_RESULT = 1021
TRANSACTION_TOO_OLD = 1007
FUTURE_VERSION = 1009
TRANSACTION_CANCELLED = 1025
TRANSACTION_TIMED_OUT = 1031
PROCESS_BEHIND = 1037
DATABASE_LOCKED = 1038
CLUSTER_VERSION_CHANGED = 1039
CLIENT_INVALID_OPERATION = 2000
KEY_OUTSIDE_LEGAL_RANGE = 2004
INVERTED_RANGE = 2005
INVALID_OPTION_VALUE = 2006
USED_DURING_COMMIT = 2017
TRANSACTION_TOO_LARGE = 2101
KEY_TOO_LARGE = 2102
VALUE_TOO_LARGE = 2103
IO_ERROR = 1510
FILE_NOT_FOUND = 1511
PERMISSION_DENIED = 1516
CLIENT_LIBRARY_MISSING = 2203  # fdb's api_version_not_supported, the nearest code it has
UNKNOWN_ERROR = 4000

#: The message of waiting on a versionstamp future before the commit was issued.
NOT_YET_COMMITTED = (
    "the versionstamp future was waited on before commit(): wait on it after commit() (on "
    "FoundationDB that wait would never return)"
)

DESCRIPTIONS: dict[int, str] = {
    NOT_COMMITTED: "Transaction not committed due to conflict with another transaction",
    COMMIT_UNKNOWN_RESULT: "Transaction may or may not have committed",
    TRANSACTION_TOO_OLD: "Transaction is too old to perform reads or be committed",
    FUTURE_VERSION: "Request for future version",
    TRANSACTION_CANCELLED: "Operation aborted because the transaction was cancelled",
    TRANSACTION_TIMED_OUT: "Operation aborted because the transaction timed out",
    PROCESS_BEHIND: "Storage process does not have recent mutations",
    DATABASE_LOCKED: "Database is locked",
    CLUSTER_VERSION_CHANGED: "The protocol version of the cluster has changed",
    CLIENT_INVALID_OPERATION: "Invalid API call",
    KEY_OUTSIDE_LEGAL_RANGE: "Key outside legal range",
    INVERTED_RANGE: "Range begin key larger than end key",
    INVALID_OPTION_VALUE: "Option set with an invalid value",
    USED_DURING_COMMIT: "Operation issued while a commit was outstanding",
    TRANSACTION_TOO_LARGE: "Transaction exceeds byte limit",
    KEY_TOO_LARGE: "Key length exceeds limit",
    VALUE_TOO_LARGE: "Value length exceeds limit",
    IO_ERROR: "Disk i/o operation failed",
    FILE_NOT_FOUND: "File not found",
    PERMISSION_DENIED: "Permission denied",
    CLIENT_LIBRARY_MISSING: "FoundationDB client library not available",
    UNKNOWN_ERROR: "An unknown error occurred",
}

# FoundationDB's classification (``fdb_error_predicate`` in the C client, bindings 7.1 to 8.0):
# "maybe committed" errors may have taken effect; "retryable, not committed" ones did not;
# "retryable" is the union. One table for the embedded engine; on FoundationDB the binding's
# own predicates decide (``fdb.kv_error_from_fdb`` stores their answer on the error).
_MAYBE_COMMITTED = frozenset({COMMIT_UNKNOWN_RESULT, CLUSTER_VERSION_CHANGED})
_RETRYABLE_NOT_COMMITTED = frozenset(
    {
        NOT_COMMITTED,
        TRANSACTION_TOO_OLD,
        FUTURE_VERSION,
        DATABASE_LOCKED,
        PROCESS_BEHIND,
        1042,  # commit_proxy_memory_limit_exceeded
        1051,  # batch_transaction_throttled
        1078,  # grv_proxy_memory_limit_exceeded
        1213,  # tag_throttled
        1223,  # proxy_tag_throttled (7.3)
        1235,  # transaction_throttled_hot_shard (7.3 / 8.0)
        1242,  # (8.0)
    }
)
_RETRYABLE = _MAYBE_COMMITTED | _RETRYABLE_NOT_COMMITTED
#: The embedded engine's table, public for tests and tools.
RETRYABLE_CODES, MAYBE_COMMITTED_CODES = _RETRYABLE, _MAYBE_COMMITTED


class QuickQueueError(Exception):
    """The root of quick_queue's errors: ``except QuickQueueError`` catches every error the
    queue raises on purpose, the storage layer's included."""


class ConfigurationError(QuickQueueError, ValueError):
    """A setting or database URL that cannot work; the message says which and what to do."""


class KVError(QuickQueueError):
    """An error of the key-value layer; ``code`` is FoundationDB's error code."""

    #: Set by the FoundationDB adapter from the binding's predicates; None: use the table.
    fdb_retryable: bool | None = None
    fdb_maybe_committed: bool | None = None
    #: True when the error means the FoundationDB cluster did not answer at all.
    unreachable: bool = False
    #: True when the error ended a commit that was already sent (a timeout then leaves the
    #: outcome unknown, see ``outcome_unknown``).
    at_commit: bool = False

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.description = message or DESCRIPTIONS.get(code, "Unknown error")
        super().__init__(f"{self.description} ({code})")

    def __reduce__(self) -> tuple[type[KVError], tuple[int, str]]:
        return (type(self), (self.code, self.description))


class StorageError(KVError):
    """The embedded engine's file cannot be used as asked; the message names the path.
    ``transient``: the condition may pass by itself (a full disk, a failed write), so a
    background loop should back off and try again (``is_transient``)."""

    def __init__(
        self, code: int, message: str | None = None, path: str = "", transient: bool = False
    ) -> None:
        super().__init__(code, message)
        self.path = path
        self.transient = transient

    def __reduce__(  # type: ignore[override]
        self,
    ) -> tuple[type[KVError], tuple[int, str, str, bool]]:
        return (type(self), (self.code, self.description, self.path, self.transient))


class ForeignDatabase(StorageError):
    """An existing SQLite database that is not a quick_queue store: opening it for writing would
    add the engine's tables and switch it to WAL mode, so it is refused unless adopted."""

    def __init__(self, code: int, message: str | None = None, path: str = "") -> None:
        super().__init__(code, message, path)


class ClientLibraryMissing(KVError):
    """An ``fdb:`` database was asked for but the FoundationDB client cannot be loaded."""

    def __init__(self, message: str) -> None:
        super().__init__(CLIENT_LIBRARY_MISSING, message)


def _code(error: BaseException) -> int | None:
    """The FoundationDB code of a ``KVError`` or of a raw ``fdb.FDBError``; None otherwise."""
    if isinstance(error, KVError):
        return error.code
    if any(c.__name__ == "FDBError" and c.__module__ == "fdb.impl" for c in type(error).__mro__):
        return int(getattr(error, "code", -1))
    return None


def _binding_says(name: str, error: BaseException) -> bool | None:
    """The binding's ``fdb.predicates.is_<name>`` for a raw ``fdb.FDBError`` (None if unknown)."""
    import sys

    fdb = sys.modules.get("fdb")
    predicate = getattr(getattr(fdb, "predicates", None), f"is_{name}", None)
    if predicate is None:
        return None
    try:
        return bool(predicate(error))
    except Exception:  # noqa: BLE001 - no C library to ask: fall back to the table
        return None


def is_retryable(error: BaseException) -> bool:
    """True when running the transaction again may succeed (FoundationDB's ``retryable``)."""
    if isinstance(error, KVError) and error.fdb_retryable is not None:
        return error.fdb_retryable
    code = _code(error)
    if code is None:
        return False
    if not isinstance(error, KVError):
        said = _binding_says("retryable", error)
        if said is not None:
            return said
    return code in _RETRYABLE


def maybe_committed(error: BaseException) -> bool:
    """True when the failed commit may nonetheless have taken effect (1021, 1039)."""
    if isinstance(error, KVError) and error.fdb_maybe_committed is not None:
        return error.fdb_maybe_committed
    code = _code(error)
    if code is None:
        return False
    if not isinstance(error, KVError):
        said = _binding_says("maybe_committed", error)
        if said is not None:
            return said
    return code in _MAYBE_COMMITTED


def outcome_unknown(error: BaseException) -> bool:
    """True when a failed commit may have taken effect: ``maybe_committed`` (1021, 1039), or a
    timeout (1031) that fired while the commit was in flight. FoundationDB's predicates leave
    the timeout out (``on_error`` does not retry it), but the commit may have landed all the
    same: whoever retries it at a higher level must do so idempotently."""
    if maybe_committed(error):
        return True
    return isinstance(error, KVError) and error.at_commit and error.code == TRANSACTION_TIMED_OUT


def is_unreachable(error: BaseException) -> bool:
    """True when the error says the FoundationDB cluster did not answer at all (the adapter
    marks a timeout of a transaction that never got a read version): log "cluster
    unreachable" rather than the bare timeout."""
    return isinstance(error, KVError) and error.unreachable


def is_transient(error: BaseException) -> bool:
    """True when a background loop (scanner, settler, lease keeper) should back off and try
    again rather than stop: retryable, a transaction timeout (1031: FoundationDB's ``on_error``
    does not retry it, but a loop may, once the cluster answers again), an unreachable
    cluster, or a storage error that may pass (the embedded engine's disk full). A user's own
    retry loop should keep to ``is_retryable``."""
    if isinstance(error, StorageError) and error.transient:
        return True
    return is_retryable(error) or _code(error) == TRANSACTION_TIMED_OUT or is_unreachable(error)
