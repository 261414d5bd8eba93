"""The seam every layer above stands on: ``Database`` and ``Transaction`` with FoundationDB's
Python API names, the retry loop, and the ``transactional`` decorator.

Both engines (the embedded SQLite engine and the FoundationDB adapter) subclass these, and the
fault-injection wrapper wraps any of them, so the queue is written once.
"""

from __future__ import annotations

import functools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from quick_queue.kv import retries
from quick_queue.kv.errors import (
    INVALID_OPTION_VALUE,
    KVError,
    is_retryable,
    maybe_committed,
)

P = ParamSpec("P")
R = TypeVar("R")

KeyValue = tuple[bytes, bytes]


class TimeSource(Protocol):
    """Anything with ``now()`` in seconds since the epoch (``quick_queue.clock.Clock`` fits;
    the key-value layer does not import it)."""

    def now(self) -> float: ...


class ReadView(ABC):
    """The reads of a transaction. ``Transaction.snapshot`` is a ``ReadView`` that adds no
    read conflicts."""

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None when absent."""

    @abstractmethod
    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        """Pairs with ``begin <= key < end`` in key order (descending if ``reverse``); at most
        ``limit`` of them when ``limit > 0``."""

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """``[get(k) for k in keys]``, but the engine may fetch them together (FoundationDB
        issues every read before waiting for any; SQLite answers them with one query)."""
        return [self.get(key) for key in keys]

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        """``[get_range(begin, end, limit=limit) for begin, end, limit in ranges]`` (forward
        reads; ``limit`` 0: unlimited), with exactly their read conflicts, but the engine may
        fetch them together (FoundationDB issues every read before waiting for any; SQLite
        answers the ranges the write buffer does not touch with one query): a zone visit
        reads its pointer and three index heads so (issue 10)."""
        return [self.get_range(begin, end, limit=limit) for begin, end, limit in ranges]

    def get_range_startswith(
        self, prefix: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self.get_range(prefix, strinc(prefix), limit=limit, reverse=reverse)

    def __getitem__(self, key: bytes) -> bytes | None:
        return self.get(key)


class VersionstampFuture(ABC):
    """What ``get_versionstamp()`` returns: asked before commit, resolved by a successful one."""

    @abstractmethod
    def wait(self) -> bytes:
        """The 10-byte versionstamp of the commit; raises if the transaction did not commit
        (or committed without writes)."""


class TransactionOptions:
    """The options the queue uses, under FoundationDB's names (``tr.options.set_timeout``)."""

    # Defaults as class attributes: a setter makes the instance's own. Every transaction
    # makes an options object and few set one (callgrind, issue 10: 2,424 -> 1,395
    # instructions to make one, against an __init__ of six assignments).
    timeout_ms: int = 0
    retry_limit: int = -1
    max_retry_delay_ms: int = 1000
    relaxed_durability: bool = False
    read_system_keys: bool = False
    access_system_keys: bool = False

    def set_timeout(self, milliseconds: int) -> None:
        if milliseconds < 0:
            raise KVError(INVALID_OPTION_VALUE, "timeout must be >= 0 milliseconds")
        self.timeout_ms = milliseconds

    def set_retry_limit(self, retries: int) -> None:
        if retries < -1:
            raise KVError(INVALID_OPTION_VALUE, "retry limit must be -1 (unlimited) or >= 0")
        self.retry_limit = retries

    def set_relaxed_durability(self) -> None:
        """Let the embedded engine acknowledge this commit before it reaches the disk: a power
        loss may undo it (never a process crash) until a later durable commit, which makes it
        and everything before it durable; commits are never reordered, so what survives is
        always a consistent prefix. Saves an fsync per commit. The queue uses it only where an
        undone commit is harmless: leasing jobs (they are leased again) and extending leases.
        FoundationDB commits are always durable; there it changes nothing."""
        self.relaxed_durability = True

    def set_read_system_keys(self) -> None:
        """Allow reads of keys at and past ``\\xff`` (refused otherwise, error 2004)."""
        self.read_system_keys = True

    def set_access_system_keys(self) -> None:
        """Allow reads and writes of keys at and past ``\\xff``. The embedded engine has no
        system keys of its own: it allows the reads, and still refuses the writes."""
        self.read_system_keys = True
        self.access_system_keys = True

    def set_max_retry_delay(self, milliseconds: int) -> None:
        if milliseconds < 0:
            raise KVError(INVALID_OPTION_VALUE, "max retry delay must be >= 0 milliseconds")
        self.max_retry_delay_ms = milliseconds


class Transaction(ReadView):
    """One optimistic, serializable transaction (FoundationDB's semantics on every engine)."""

    options: TransactionOptions
    snapshot: ReadView
    #: Set by ``Database.transact`` once an attempt of this transaction failed with an error
    #: after which its commit may have happened (1021): a retried write that is not
    #: idempotent by itself (an enqueue under a freshly made id) then checks for its earlier
    #: commit first. Never reset: it speaks of the retry loop, not of one attempt.
    unknown_result: bool = False

    def get_before_write(self, key: bytes) -> bytes | None:
        """``get(key)`` for a transaction that goes on to write (an enqueue reads its zone's
        marker, then writes the job). The value is as fresh as ``get``'s for what the
        transaction commits: an engine may answer from what it last knew and leave the proof
        to the commit's conflict check, which fails the commit with ``not_committed`` (1020,
        retried) if the key was written after that version. A transaction that commits no
        write after all is checked at its commit instead (1020 likewise). FoundationDB's
        reads are always fresh: there it is ``get``."""
        return self.get(key)

    # -- writes ---------------------------------------------------------------------------
    @abstractmethod
    def set(self, key: bytes, value: bytes) -> None: ...

    def set_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """``set(key, value)`` for each pair, in order (enqueue_many writes a batch's jobs in
        one call). Engines may override it with a cheaper loop of the same effect."""
        for key, value in pairs:
            self.set(key, value)

    @abstractmethod
    def clear(self, key: bytes) -> None: ...

    def clear_many(self, keys: list[bytes]) -> None:
        """``clear(key)`` for each key, in order (a settle clears two keys a job). Engines may
        override it with a cheaper loop of the same effect."""
        for key in keys:
            self.clear(key)

    @abstractmethod
    def clear_range(self, begin: bytes, end: bytes) -> None: ...

    @abstractmethod
    def add(self, key: bytes, param: bytes) -> None:
        """Atomic little-endian addition (FoundationDB's ``add``)."""

    @abstractmethod
    def max(self, key: bytes, param: bytes) -> None:
        """Atomic little-endian unsigned maximum."""

    @abstractmethod
    def min(self, key: bytes, param: bytes) -> None:
        """Atomic little-endian unsigned minimum."""

    @abstractmethod
    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        """``key`` holds 10 placeholder bytes and ends with their 4-byte little-endian offset."""

    @abstractmethod
    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        """``value`` holds 10 placeholder bytes and ends with their 4-byte little-endian offset."""

    @abstractmethod
    def get_versionstamp(self) -> VersionstampFuture: ...

    # -- conflicts and versions -------------------------------------------------------------
    @abstractmethod
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None: ...

    def add_read_conflict_key(self, key: bytes) -> None:
        self.add_read_conflict_range(key, key + b"\x00")

    @abstractmethod
    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None: ...

    def add_write_conflict_key(self, key: bytes) -> None:
        self.add_write_conflict_range(key, key + b"\x00")

    @abstractmethod
    def get_read_version(self) -> int: ...

    def get_approximate_size(self) -> int:
        """About how many bytes this transaction would commit, counted as FoundationDB counts
        toward its 10 MB limit (mutations and conflict ranges): cut batches by it. Engines
        override this; the default knows nothing and says 0."""
        return 0

    # -- life cycle -------------------------------------------------------------------------
    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def reset(self) -> None:
        """Forget everything done so far; the object can be used as a new transaction."""

    @abstractmethod
    def on_error(self, error: BaseException) -> None:
        """FoundationDB's retry step: for a retryable error (and retries left) wait a backoff,
        reset, and return; otherwise raise ``error``."""

    # -- conveniences of FoundationDB's binding ---------------------------------------------
    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.set(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.clear(key)


class RetryState:
    """The backoff and retry count FoundationDB's ``on_error`` keeps per transaction."""

    def __init__(self) -> None:
        self.retries = 0

    def backoff_or_raise(
        self, error: BaseException, options: TransactionOptions, *, at_once: bool = False
    ) -> None:
        """Raise ``error`` if it is not retryable or the retries are spent; else wait before
        the retry (not with ``at_once``: counted as a retry, without the wait)."""
        if not is_retryable(error):
            raise error
        if options.retry_limit >= 0 and self.retries >= options.retry_limit:
            raise error
        if at_once:
            self.retries += 1
            return
        # FoundationDB starts at 10 ms and doubles up to max_retry_delay; the jitter keeps
        # transactions that conflicted with each other from meeting again at the same instant.
        delay = min(options.max_retry_delay_ms / 1000.0, 0.002 * (2**self.retries))
        self.retries += 1
        time.sleep(delay * random.random())


class Database(ABC):
    """A key-value database. Use ``transact`` (or ``@transactional``) for the retry loop."""

    url: str = ""
    #: True when a process forked from one that opened this database may open ``url`` again
    #: (the embedded engine; never reuse the parent's object). False for FoundationDB, whose
    #: client cannot run in a forked child: start such children with the "spawn" method.
    reopen_after_fork: bool = True

    @abstractmethod
    def create_transaction(self) -> Transaction: ...

    def store_time(self) -> float:
        """The store's time in seconds since the epoch: the one time every process using this
        store compares leases against, whatever its own clock says. The engines override it
        (the embedded engine's clock, FoundationDB's read version); this default is the
        host's clock."""
        return time.time()

    def notify_change(self, tr: Transaction) -> None:
        """Called by a transaction that makes work for idle consumers (an enqueue), so their
        ``wait_for_change`` wakes once it commits. Engines that signal every commit by
        themselves (the embedded engine) need nothing here."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def transact(
        self, fn: Callable[Concatenate[Transaction, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``fn(tr, *args, **kwargs)`` and commit, retrying on retryable errors."""
        tr = self.create_transaction()
        while True:
            try:
                result = fn(tr, *args, **kwargs)
                tr.commit()
                return result
            except KVError as error:
                tr.on_error(error)  # raises unless the transaction is to run again
                if maybe_committed(error):
                    tr.unknown_result = True
                if retries.listeners:
                    retries.notify(error.code)

    def wait_for_change(self, timeout: float) -> None:
        """Block until another transaction may have committed, or ``timeout`` seconds pass.
        A hint for idle consumers; engines without a cheap signal just sleep."""
        time.sleep(timeout)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def range_read_conflict(
    begin: bytes, end: bytes, rows: list[KeyValue], limit: int
) -> tuple[bytes, bytes]:
    """The read-conflict range of a forward ``get_range(begin, end, limit=limit)`` that
    returned ``rows`` (FoundationDB's rule): up to just past the last row when the limit cut
    the read short, else the whole range. For an engine's reads, and for a caller that read
    through ``tr.snapshot`` and adds the regular read's conflict itself."""
    if limit and len(rows) >= limit:
        return begin, rows[-1][0] + b"\x00"
    return begin, end


def strinc(key: bytes) -> bytes:
    """The first key after every key that starts with ``key`` (FoundationDB's ``strinc``)."""
    stripped = key.rstrip(b"\xff")
    if not stripped:
        raise ValueError("key must contain at least one byte that is not 0xFF")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def as_transaction(obj: object) -> Transaction | None:
    """``obj`` as one of our transactions: ours as is, a raw ``fdb.Transaction`` wrapped by the
    adapter; None for anything else (databases included)."""
    if isinstance(obj, Transaction):
        return obj
    if type(obj).__module__ == "fdb.impl" and type(obj).__name__ == "Transaction":
        from quick_queue.kv.fdb import wrap_transaction

        return wrap_transaction(obj)
    return None


def as_database(obj: object) -> Database | None:
    if isinstance(obj, Database):
        return obj
    if type(obj).__module__ == "fdb.impl" and type(obj).__name__ == "Database":
        from quick_queue.kv.fdb import wrap_database

        return wrap_database(obj)
    return None


def transactional(
    fn: Callable[Concatenate[Transaction, P], R],
) -> Callable[Concatenate[Any, P], R]:
    """Decorate ``fn(tr, ...)`` in the style of ``fdb.transactional``: called with a transaction
    it joins it (no commit, no retry: the outermost caller owns both); called with a database it
    runs in a new transaction inside the retry loop."""

    @functools.wraps(fn)
    def wrapper(db_or_tr: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        tr = as_transaction(db_or_tr)
        if tr is not None:
            return fn(tr, *args, **kwargs)
        db = as_database(db_or_tr)
        if db is None:
            raise TypeError(
                f"{fn.__name__}() needs a Database or Transaction as its first argument, "
                f"not {type(db_or_tr).__name__}"
            )
        return db.transact(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
