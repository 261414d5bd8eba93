"""Fault injection: a seeded wrapper over any ``Database`` whose commits fail the ways
FoundationDB's do, so the layers above are tested against them on every engine.

``FaultyDatabase(inner, seed=..., not_committed=..., unknown_result=..., too_old=...)`` hands out
``FaultyTransaction``s that delegate everything to a transaction of ``inner``. On each commit of
a transaction that wrote something (set, clear, atomic op, versionstamp or write-conflict range;
read-only commits never fail on FoundationDB, so they are left alone) one number is drawn from
the database's own ``random.Random(seed)``:

* with probability ``not_committed``: ``KVError(1020)``, the inner transaction not committed;
* with probability ``unknown_result``: the inner transaction **really commits**, then
  ``KVError(1021)``: a retry that is not idempotent does its work twice, as on a real cluster;
* with probability ``too_old``: ``KVError(1007)``, not committed.

The three outcomes are exclusive, so their rates must add up to at most 1. Reads (``get`` and
``get_range``, snapshot ones included) raise ``KVError(1007)`` at ``read_too_old``, by default a
quarter of ``too_old``. The injected errors are ``InjectedFault``s (a ``KVError`` subclass) and
``db.injected`` counts them per kind, so a test can assert faults really happened.

The draws come from one generator behind a lock: a single-threaded run with the same seed and
the same operations injects the same faults. ``set_rates(...)`` changes the rates at run time and
``with db.paused():`` turns injection off for a block (setting up fixtures, final checks).

The retry step is the inner engine's own: ``FaultyTransaction.on_error`` hands the error to the
inner transaction's ``on_error``, which backs off (``api.RetryState`` on the embedded engine,
FoundationDB's backoff on a cluster), counts the retry against ``retry_limit``, keeps the options
and resets the inner transaction, or raises when the error is not retryable. Injected and real
errors therefore share one retry count and one backoff.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

from quick_queue.kv.api import (
    Database,
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.errors import (
    COMMIT_UNKNOWN_RESULT,
    DESCRIPTIONS,
    NOT_COMMITTED,
    TRANSACTION_TOO_OLD,
    KVError,
)

__all__ = [
    "FAULT_KINDS",
    "READ_FAULT_SHARE",
    "FaultyDatabase",
    "FaultyTransaction",
    "InjectedFault",
]

#: The keys of ``FaultyDatabase.injected``: the three commit faults and the read fault.
FAULT_KINDS = ("not_committed", "unknown_result", "too_old", "read_too_old")

#: ``read_too_old`` defaults to this share of ``too_old``.
READ_FAULT_SHARE = 0.25

_CODES = {
    "not_committed": NOT_COMMITTED,
    "unknown_result": COMMIT_UNKNOWN_RESULT,
    "too_old": TRANSACTION_TOO_OLD,
    "read_too_old": TRANSACTION_TOO_OLD,
}


class InjectedFault(KVError):
    """A ``KVError`` raised by ``FaultyDatabase`` rather than by the engine."""

    def __init__(self, code: int, message: str | None = None) -> None:
        base = message or DESCRIPTIONS.get(code, "Unknown error")
        if not base.endswith("[injected]"):
            base = f"{base} [injected]"
        super().__init__(code, base)


def _check_rate(name: str, value: float) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")
    return rate


class FaultyDatabase(Database):
    """A ``Database`` that injects FoundationDB's commit failures into ``inner``'s
    transactions (see the module docstring)."""

    def __init__(
        self,
        inner: Database,
        *,
        seed: int = 0,
        not_committed: float = 0.0,
        unknown_result: float = 0.0,
        too_old: float = 0.0,
        read_too_old: float | None = None,
    ) -> None:
        if not isinstance(inner, Database):
            raise TypeError(f"inner must be a Database, not {type(inner).__name__}")
        self._inner = inner
        self.url = inner.url
        self.seed = seed
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._paused = 0
        self.not_committed = 0.0
        self.unknown_result = 0.0
        self.too_old = 0.0
        self.read_too_old = 0.0
        self.set_rates(
            not_committed=not_committed,
            unknown_result=unknown_result,
            too_old=too_old,
            read_too_old=read_too_old if read_too_old is not None else too_old * READ_FAULT_SHARE,
        )
        #: Faults injected so far, per kind (``FAULT_KINDS``).
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        #: Commits that drew a number (commits of transactions that wrote something).
        self.commits_drawn = 0

    # -- configuration ----------------------------------------------------------------------
    @property
    def inner(self) -> Database:
        return self._inner

    def set_rates(
        self,
        *,
        not_committed: float | None = None,
        unknown_result: float | None = None,
        too_old: float | None = None,
        read_too_old: float | None = None,
    ) -> None:
        """Change some rates (None keeps a rate as it is). Changing ``too_old`` does not change
        ``read_too_old``; pass both to change both."""
        nc = self.not_committed if not_committed is None else _check_rate(
            "not_committed", not_committed
        )
        ur = self.unknown_result if unknown_result is None else _check_rate(
            "unknown_result", unknown_result
        )
        to = self.too_old if too_old is None else _check_rate("too_old", too_old)
        rto = self.read_too_old if read_too_old is None else _check_rate(
            "read_too_old", read_too_old
        )
        if nc + ur + to > 1.0 + 1e-9:
            raise ValueError(
                "not_committed + unknown_result + too_old must be at most 1 (they are the "
                f"probabilities of exclusive outcomes of one commit), not {nc + ur + to:g}"
            )
        with self._lock:
            self.not_committed, self.unknown_result, self.too_old = nc, ur, to
            self.read_too_old = rto

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Inject nothing inside the block (no numbers are drawn either). Nests."""
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    @property
    def total_injected(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def reset_counters(self) -> None:
        with self._lock:
            self.injected = dict.fromkeys(FAULT_KINDS, 0)
            self.commits_drawn = 0

    # -- draws --------------------------------------------------------------------------------
    def _draw_commit(self) -> str | None:
        """The fault this commit gets, or None."""
        with self._lock:
            if self._paused or not (self.not_committed or self.unknown_result or self.too_old):
                return None
            self.commits_drawn += 1
            r = self._random.random()
            if r < self.not_committed:
                return "not_committed"
            r -= self.not_committed
            if r < self.unknown_result:
                return "unknown_result"
            r -= self.unknown_result
            if r < self.too_old:
                return "too_old"
            return None

    def _draw_read(self) -> bool:
        with self._lock:
            if self._paused or not self.read_too_old:
                return False
            return self._random.random() < self.read_too_old

    def _injected(self, kind: str) -> InjectedFault:
        with self._lock:
            self.injected[kind] += 1
        return InjectedFault(_CODES[kind])

    # -- Database -------------------------------------------------------------------------------
    def create_transaction(self) -> FaultyTransaction:
        return FaultyTransaction(self, self._inner.create_transaction())

    def close(self) -> None:
        self._inner.close()

    def wait_for_change(self, timeout: float) -> None:
        self._inner.wait_for_change(timeout)

    def store_time(self) -> float:
        return self._inner.store_time()

    def notify_change(self, tr: Transaction) -> None:
        self._inner.notify_change(tr.inner if isinstance(tr, FaultyTransaction) else tr)

    def __repr__(self) -> str:
        return (
            f"<FaultyDatabase {self._inner!r} seed={self.seed} "
            f"not_committed={self.not_committed:g} unknown_result={self.unknown_result:g} "
            f"too_old={self.too_old:g} read_too_old={self.read_too_old:g}>"
        )


class _FaultyStamp(VersionstampFuture):
    """The inner transaction's versionstamp future, failing with the injected commit error
    (as FoundationDB's does with the commit's error), even after a 1021 that really
    committed."""

    def __init__(self, inner: VersionstampFuture) -> None:
        self._inner = inner
        self.error: KVError | None = None

    def wait(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self._inner.wait()


class _FaultySnapshot(ReadView):
    __slots__ = ("_tr",)

    def __init__(self, tr: FaultyTransaction) -> None:
        self._tr = tr

    def get(self, key: bytes) -> bytes | None:
        self._tr._maybe_read_fault()
        return self._tr._inner.snapshot.get(key)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._tr._maybe_read_fault()
        return self._tr._inner.snapshot.get_range(begin, end, limit=limit, reverse=reverse)


class FaultyTransaction(Transaction):
    """A transaction of ``inner`` (``FaultyTransaction.inner``) with faults injected."""

    def __init__(self, db: FaultyDatabase, inner: Transaction) -> None:
        self._db = db
        self._inner = inner
        self.snapshot = _FaultySnapshot(self)
        self._new_attempt()

    def _new_attempt(self) -> None:
        self._wrote = False
        self._stamps: list[_FaultyStamp] = []

    @property
    def inner(self) -> Transaction:
        return self._inner

    @property
    def options(self) -> TransactionOptions:
        """The inner transaction's options (an engine may replace them on ``reset``)."""
        return self._inner.options

    @options.setter
    def options(self, value: TransactionOptions) -> None:
        self._inner.options = value

    def _maybe_read_fault(self) -> None:
        if self._db._draw_read():
            raise self._db._injected("read_too_old")

    # -- reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        self._maybe_read_fault()
        return self._inner.get(key)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._maybe_read_fault()
        return self._inner.get_range(begin, end, limit=limit, reverse=reverse)

    # -- writes -----------------------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        self._inner.set(key, value)
        self._wrote = True

    def clear(self, key: bytes) -> None:
        self._inner.clear(key)
        self._wrote = True

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._inner.clear_range(begin, end)
        self._wrote = True

    def add(self, key: bytes, param: bytes) -> None:
        self._inner.add(key, param)
        self._wrote = True

    def max(self, key: bytes, param: bytes) -> None:
        self._inner.max(key, param)
        self._wrote = True

    def min(self, key: bytes, param: bytes) -> None:
        self._inner.min(key, param)
        self._wrote = True

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._inner.set_versionstamped_key(key, value)
        self._wrote = True

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._inner.set_versionstamped_value(key, value)
        self._wrote = True

    def get_versionstamp(self) -> VersionstampFuture:
        stamp = _FaultyStamp(self._inner.get_versionstamp())
        self._stamps.append(stamp)
        return stamp

    # -- conflicts and versions -------------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._inner.add_read_conflict_range(begin, end)

    def add_read_conflict_key(self, key: bytes) -> None:
        self._inner.add_read_conflict_key(key)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._inner.add_write_conflict_range(begin, end)
        self._wrote = True

    def add_write_conflict_key(self, key: bytes) -> None:
        self._inner.add_write_conflict_key(key)
        self._wrote = True

    def get_read_version(self) -> int:
        return self._inner.get_read_version()

    # -- life cycle -------------------------------------------------------------------------
    def _fail(self, kind: str) -> InjectedFault:
        error = self._db._injected(kind)
        for stamp in self._stamps:
            stamp.error = error
        return error

    def commit(self) -> None:
        kind = self._db._draw_commit() if self._wrote else None
        if kind in ("not_committed", "too_old"):
            raise self._fail(kind)
        self._inner.commit()  # a real error propagates as it is, and is not counted
        if kind == "unknown_result":
            raise self._fail(kind)

    def reset(self) -> None:
        self._inner.reset()
        self._new_attempt()

    def on_error(self, error: BaseException) -> None:
        """The inner engine's retry step (its backoff, retry limit and reset), for injected and
        real errors alike; raises ``error`` when it is not retryable."""
        self._inner.on_error(error)
        self._new_attempt()

    def __repr__(self) -> str:
        return f"<FaultyTransaction over {self._inner!r}>"
