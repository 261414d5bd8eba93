"""Errors of the key-value layer, with FoundationDB's numeric codes.

Both engines raise the same type so the layers above handle one thing::

    QuickQueueError              root of every error quick_queue raises on purpose
     └── KVError                 .code is FoundationDB's error code
          ├── StorageError       the file behind the embedded engine is unusable
          │                      (corrupt, read-only, disk full); .path names it
          └── ClientLibraryMissing  fdb: URL, but the FoundationDB client is not installed

``QuickQueueError`` lives here, at the bottom of the package, so the storage errors can derive
from it; ``quick_queue.errors`` re-exports it and hangs the queue's own errors under it.

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

DESCRIPTIONS: dict[int, str] = {
    NOT_COMMITTED: "Transaction not committed due to conflict with another transaction",
    COMMIT_UNKNOWN_RESULT: "Transaction may or may not have committed",
    TRANSACTION_TOO_OLD: "Transaction is too old to perform reads or be committed",
    FUTURE_VERSION: "Request for future version",
    TRANSACTION_CANCELLED: "Operation aborted because the transaction was cancelled",
    TRANSACTION_TIMED_OUT: "Operation aborted because the transaction timed out",
    PROCESS_BEHIND: "Storage process does not have recent mutations",
    DATABASE_LOCKED: "Database is locked",
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

# FoundationDB's "retryable" predicate: the transaction may simply be run again.
_RETRYABLE = frozenset(
    {NOT_COMMITTED, COMMIT_UNKNOWN_RESULT, TRANSACTION_TOO_OLD, FUTURE_VERSION, PROCESS_BEHIND,
     DATABASE_LOCKED, 1213, 1051, 1039, 1042, 1078}
)
# "maybe committed": the commit may have taken effect.
_MAYBE_COMMITTED = frozenset({COMMIT_UNKNOWN_RESULT, 1021})


class QuickQueueError(Exception):
    """The root of quick_queue's errors: ``except QuickQueueError`` catches every error the
    queue raises on purpose, the storage layer's included."""


class KVError(QuickQueueError):
    """An error of the key-value layer; ``code`` is FoundationDB's error code."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code
        self.description = message or DESCRIPTIONS.get(code, "Unknown error")
        super().__init__(f"{self.description} ({code})")

    def __reduce__(self) -> tuple[type[KVError], tuple[int, str]]:
        return (type(self), (self.code, self.description))


class StorageError(KVError):
    """The embedded engine's file cannot be used as asked; the message names the path."""

    def __init__(self, code: int, message: str | None = None, path: str = "") -> None:
        super().__init__(code, message)
        self.path = path

    def __reduce__(self) -> tuple[type[KVError], tuple[int, str, str]]:  # type: ignore[override]
        return (type(self), (self.code, self.description, self.path))


class ClientLibraryMissing(KVError):
    """An ``fdb:`` database was asked for but the FoundationDB client cannot be loaded."""

    def __init__(self, message: str) -> None:
        super().__init__(CLIENT_LIBRARY_MISSING, message)


def is_retryable(error: BaseException) -> bool:
    """True when running the transaction again may succeed."""
    return isinstance(error, KVError) and error.code in _RETRYABLE


def maybe_committed(error: BaseException) -> bool:
    """True when the failed commit may nonetheless have taken effect."""
    return isinstance(error, KVError) and error.code in _MAYBE_COMMITTED
