"""The transaction side of fault injection (``faults.FaultyDatabase`` hands these out): every
operation delegates to a transaction of the inner engine, after the database draws whether it
fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quick_queue.kv.api import (
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.errors import KVError

if TYPE_CHECKING:
    from quick_queue.kv.faults import FaultyDatabase, InjectedFault


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

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        self._tr._maybe_read_fault()
        return self._tr._inner.snapshot.get_many(keys)


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
        kind = self._db._draw_read()
        if kind is not None:
            raise self._db._injected(kind)

    # -- reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        self._maybe_read_fault()
        return self._inner.get(key)

    def get_before_write(self, key: bytes) -> bytes | None:
        self._maybe_read_fault()
        return self._inner.get_before_write(key)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        self._maybe_read_fault()
        return self._inner.get_range(begin, end, limit=limit, reverse=reverse)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        self._maybe_read_fault()
        return self._inner.get_many(keys)

    # -- writes -----------------------------------------------------------------------------
    def set(self, key: bytes, value: bytes) -> None:
        self._inner.set(key, value)
        self._wrote = True

    def clear(self, key: bytes) -> None:
        self._inner.clear(key)
        self._wrote = True

    def clear_many(self, keys: list[bytes]) -> None:
        self._inner.clear_many(keys)
        self._wrote = self._wrote or bool(keys)

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

    def get_approximate_size(self) -> int:
        return self._inner.get_approximate_size()

    # -- life cycle -------------------------------------------------------------------------
    def _fail(self, kind: str, committed: bool = False) -> InjectedFault:
        error = self._db._injected(kind, committed)
        error.at_commit = True  # every commit fault ends a commit (a timed-out one is unknown)
        for stamp in self._stamps:
            stamp.error = error
        return error

    def commit(self) -> None:
        kind, detail = self._db._draw_commit() if self._wrote else (None, 0.0)
        # A timed-out commit was in flight: by the second draw, half of them took effect.
        commits = kind is None or kind == "unknown_result" or (kind == "timed_out" and detail < 0.5)
        if not commits:
            assert kind is not None
            raise self._fail(kind)
        self._inner.commit()  # a real error propagates as it is, and is not counted
        if kind is not None:
            raise self._fail(kind, committed=True)

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
