"""Fault injection: a seeded wrapper over any ``Database`` whose transactions fail the ways
FoundationDB's do, so the layers above are tested against them on every engine.

``FaultyDatabase(inner, seed=..., <kind>=<rate>...)`` hands out ``FaultyTransaction``s that
delegate everything to a transaction of ``inner``. Every rate defaults to 0; ``fdb_like(inner,
seed)`` turns on ``DEFAULT_RATES``, about FoundationDB's own client fault injection (a quarter
of commits and reads). On each commit of a transaction that wrote something (read-only commits
never fail on FoundationDB, so they are left alone) one number is drawn, and at most one of:

* ``not_committed``: ``KVError(1020)``, the inner transaction not committed;
* ``unknown_result``: the inner transaction **really commits**, then ``KVError(1021)``: a retry
  that is not idempotent does its work twice, as on a real cluster;
* ``unknown_not_committed``: ``KVError(1021)`` and the inner transaction **not** committed:
  code that assumes a 1021 did commit loses work, as on a real cluster;
* ``too_old``: ``KVError(1007)``, not committed;
* ``timed_out``: ``KVError(1031)`` (not retryable by ``on_error``, as in FoundationDB); the
  commit was in flight, so half of these (by the same draw) really commit.

Reads (``get``, ``get_many``, ``get_range``, snapshot ones included) draw for ``read_too_old``
(1007; by default a quarter of ``too_old``), ``read_future_version`` (1009) and
``read_timed_out`` (1031). The commit kinds are exclusive, so their rates add up to at most 1;
so do the read kinds. Injected errors are ``InjectedFault``s (a ``KVError``); ``db.injected``
counts them per kind and ``db.log`` lists them in order (kind, and for commits whether the
inner transaction committed).

Replay: every draw comes from one ``random.Random(seed)`` behind a lock, so a run with the same
seed and the same operations in the same order injects the same faults (``db.log`` is equal);
with several threads the order of operations, and so the faults each one meets, follows the
scheduling. ``set_rates(...)`` changes rates at run time; ``with db.paused():`` injects nothing
inside a block.

The retry step is the inner engine's own: ``FaultyTransaction.on_error`` hands the error to the
inner transaction's ``on_error`` (its backoff, retry limit, options kept, reset), so injected
and real errors share one retry count and one backoff.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import (
    COMMIT_UNKNOWN_RESULT,
    DESCRIPTIONS,
    FUTURE_VERSION,
    NOT_COMMITTED,
    TRANSACTION_TIMED_OUT,
    TRANSACTION_TOO_OLD,
    KVError,
)

__all__ = [
    "COMMIT_KINDS",
    "DEFAULT_RATES",
    "FAULT_KINDS",
    "READ_FAULT_SHARE",
    "READ_KINDS",
    "FaultyDatabase",
    "FaultyTransaction",
    "InjectedFault",
]

#: Commit faults, in draw order, with their codes.
COMMIT_KINDS: dict[str, int] = {
    "not_committed": NOT_COMMITTED,
    "unknown_result": COMMIT_UNKNOWN_RESULT,
    "unknown_not_committed": COMMIT_UNKNOWN_RESULT,
    "too_old": TRANSACTION_TOO_OLD,
    "timed_out": TRANSACTION_TIMED_OUT,
}
#: Read faults, in draw order, with their codes.
READ_KINDS: dict[str, int] = {
    "read_too_old": TRANSACTION_TOO_OLD,
    "read_future_version": FUTURE_VERSION,
    "read_timed_out": TRANSACTION_TIMED_OUT,
}
#: The keys of ``FaultyDatabase.injected``.
FAULT_KINDS = (*COMMIT_KINDS, *READ_KINDS)

#: ``read_too_old`` defaults to this share of ``too_old``.
READ_FAULT_SHARE = 0.25

#: ``fdb_like``'s rates: a quarter of commits and of reads fail, mostly as conflicts, as with
#: FoundationDB's client-side fault injection (which fires about a quarter of the time).
DEFAULT_RATES: dict[str, float] = {
    "not_committed": 0.12,
    "unknown_result": 0.04,
    "unknown_not_committed": 0.04,
    "too_old": 0.03,
    "timed_out": 0.02,
    "read_too_old": 0.10,
    "read_future_version": 0.12,
    "read_timed_out": 0.03,
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
    """A ``Database`` that injects FoundationDB's failures into ``inner``'s transactions (see
    the module docstring)."""

    def __init__(
        self,
        inner: Database,
        *,
        seed: int = 0,
        not_committed: float = 0.0,
        unknown_result: float = 0.0,
        unknown_not_committed: float = 0.0,
        too_old: float = 0.0,
        timed_out: float = 0.0,
        read_too_old: float | None = None,
        read_future_version: float = 0.0,
        read_timed_out: float = 0.0,
    ) -> None:
        if not isinstance(inner, Database):
            raise TypeError(f"inner must be a Database, not {type(inner).__name__}")
        self._inner = inner
        self.url = inner.url
        self.reopen_after_fork = inner.reopen_after_fork
        self.seed = seed
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._paused = 0
        self.rates: dict[str, float] = dict.fromkeys(FAULT_KINDS, 0.0)
        self.set_rates(
            not_committed=not_committed,
            unknown_result=unknown_result,
            unknown_not_committed=unknown_not_committed,
            too_old=too_old,
            timed_out=timed_out,
            read_too_old=read_too_old if read_too_old is not None else too_old * READ_FAULT_SHARE,
            read_future_version=read_future_version,
            read_timed_out=read_timed_out,
        )
        #: Faults injected so far, per kind (``FAULT_KINDS``).
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        #: Every fault injected, in order: (kind, whether the inner transaction committed).
        self.log: list[tuple[str, bool]] = []
        #: Commits that drew a number (commits of transactions that wrote something).
        self.commits_drawn = 0

    @classmethod
    def fdb_like(cls, inner: Database, *, seed: int = 0, scale: float = 1.0) -> FaultyDatabase:
        """``inner`` with ``DEFAULT_RATES`` (each multiplied by ``scale``)."""
        return cls(inner, seed=seed, **{k: v * scale for k, v in DEFAULT_RATES.items()})

    # -- configuration ----------------------------------------------------------------------
    @property
    def inner(self) -> Database:
        return self._inner

    @property
    def not_committed(self) -> float:
        return self.rates["not_committed"]

    @property
    def unknown_result(self) -> float:
        return self.rates["unknown_result"]

    @property
    def too_old(self) -> float:
        return self.rates["too_old"]

    @property
    def read_too_old(self) -> float:
        return self.rates["read_too_old"]

    def set_rates(self, **rates: float | None) -> None:
        """Change some rates by kind (None or absent keeps a rate as it is). Changing
        ``too_old`` does not change ``read_too_old``; pass both to change both."""
        unknown = sorted(set(rates) - set(FAULT_KINDS))
        if unknown:
            raise TypeError(f"unknown fault kind(s) {', '.join(unknown)}; kinds: {FAULT_KINDS}")
        new = dict(self.rates)
        for kind, value in rates.items():
            if value is not None:
                new[kind] = _check_rate(kind, value)
        for group, kinds in (("commit", COMMIT_KINDS), ("read", READ_KINDS)):
            total = sum(new[k] for k in kinds)
            if total > 1.0 + 1e-9:
                raise ValueError(
                    f"the {group} fault rates ({' + '.join(kinds)}) must add up to at most 1 "
                    f"(they are the probabilities of exclusive outcomes), not {total:g}"
                )
        with self._lock:
            self.rates = new

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
            self.log = []
            self.commits_drawn = 0

    # -- draws --------------------------------------------------------------------------------
    def _draw(self, kinds: dict[str, int], counting: bool) -> tuple[str | None, float]:
        """The fault of this operation (or None), and a second number for its details."""
        with self._lock:
            rates = self.rates
            if self._paused or not any(rates[k] for k in kinds):
                return None, 0.0
            if counting:
                self.commits_drawn += 1
            r = self._random.random()
            detail = self._random.random()
            for kind in kinds:
                if r < rates[kind]:
                    return kind, detail
                r -= rates[kind]
            return None, detail

    def _draw_commit(self) -> tuple[str | None, float]:
        return self._draw(COMMIT_KINDS, counting=True)

    def _draw_read(self) -> str | None:
        return self._draw(READ_KINDS, counting=False)[0]

    def _injected(self, kind: str, committed: bool = False) -> InjectedFault:
        with self._lock:
            self.injected[kind] += 1
            self.log.append((kind, committed))
        code = COMMIT_KINDS.get(kind) or READ_KINDS[kind]
        return InjectedFault(code)

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
        rates = " ".join(f"{k}={v:g}" for k, v in self.rates.items() if v)
        return f"<FaultyDatabase {self._inner!r} seed={self.seed} {rates or 'no faults'}>"


# Imported last: the transaction module refers back to this one's types.
from quick_queue.kv.faulty_transaction import FaultyTransaction  # noqa: E402
