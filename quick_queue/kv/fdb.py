"""The FoundationDB adapter: ``fdb://`` URLs, and a raw ``fdb.Transaction`` / ``fdb.Database``
accepted wherever the queue takes a transaction or a database.

The ``fdb`` binding is imported lazily (inside functions only), so the rest of the package works
where neither the binding nor the client library is installed. What this module smooths over:

* **Loading** (``fdb_load``): the binding must match the client library's release; a mismatch or
  a missing library raises ``ClientLibraryMissing`` naming the binding to install per server
  release. ``fdb.api_version()`` may be called once per process; an earlier choice is reused.
* **Futures and errors** (``fdb_transaction``): reads return plain values; the binding's errors
  become ``KVError`` with the binding's own retry classification, except in a transaction the
  user owns, where they stay ``fdb.FDBError`` for the user's retry loop.
* **A cluster that does not answer.** ``open_fdb`` does one bounded read and raises instead of
  hanging, and sets a database-wide transaction timeout (``DEFAULT_TRANSACTION_TIMEOUT``), so no
  transaction of ours blocks forever: it fails with 1031, marked ``unreachable`` when the cluster
  never answered it (``errors.is_transient`` tells background loops to back off and retry).
* **Idle wake-ups.** ``notify_change(tr)`` bumps one key with an atomic add; ``wait_for_change``
  waits on a FoundationDB watch of it.
* **Time.** ``store_time()`` is derived from read versions (``store_clock``).
* **Processes.** The binding's network thread does not survive ``fork()``: a child process must
  open the database afresh from ``db.url`` (the cluster file is remembered, also for a
  database wrapped from a raw ``fdb.Database``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from quick_queue.kv.api import Database, TimeSource, Transaction
from quick_queue.kv.errors import CLIENT_INVALID_OPERATION, TRANSACTION_TIMED_OUT, KVError
from quick_queue.kv.fdb_load import MIN_API_VERSION, choose_api_version, load_fdb
from quick_queue.kv.fdb_transaction import (
    FDBKVError,
    FDBTransaction,
    FDBTransactionOptions,
    is_fdb_error,
    kv_error_from_fdb,
)
from quick_queue.kv.store_clock import VersionClock

__all__ = [
    "CHANGE_KEY",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TRANSACTION_TIMEOUT",
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

#: Seconds ``open_fdb`` waits for the cluster to answer its first read.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds any transaction of ours may take, its retries included (FoundationDB's own limit on
#: one attempt is 5 s; this bounds a wait on a cluster that does not answer).
DEFAULT_TRANSACTION_TIMEOUT = 10.0
#: ``fdb.tuple.pack(("qq.kv", "change"))``: bumped by enqueues, watched by idle consumers.
CHANGE_KEY = b"\x02qq.kv\x00\x02change\x00"
_ONE = (1).to_bytes(8, "little")
#: The process that started the binding's client (its network thread), once one did.
_CLIENT_PID: list[int] = []

FORKED = (
    "this process was forked from one that had opened FoundationDB: the client's network "
    "thread does not survive fork(), so nothing would ever answer (fdb.open returns the parent's "
    "dead database). Start worker processes with the 'spawn' method "
    "(multiprocessing.get_context('spawn')) and open the database in the child from its URL"
)


def _check_not_forked() -> None:
    if _CLIENT_PID and _CLIENT_PID[0] != os.getpid():
        raise KVError(CLIENT_INVALID_OPERATION, FORKED)


def _describe_cluster_file(cluster_file: str | None) -> str:
    if cluster_file:
        return cluster_file
    return (
        "the default cluster file ($FDB_CLUSTER_FILE, ./fdb.cluster or "
        "/etc/foundationdb/fdb.cluster)"
    )


def open_fdb(
    cluster_file: str | None,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    transaction_timeout: float = DEFAULT_TRANSACTION_TIMEOUT,
    read_only: bool = False,
    clock: TimeSource | None = None,
) -> FDBDatabase:
    """Open the FoundationDB cluster ``cluster_file`` describes (None: the default cluster file),
    check it answers within ``connect_timeout`` seconds (0 skips the check), and bound every
    transaction of this database to ``transaction_timeout`` seconds (0: no bound)."""
    _check_not_forked()
    fdb = load_fdb()
    where = _describe_cluster_file(cluster_file)
    try:
        raw = fdb.open(cluster_file)
        if not _CLIENT_PID:
            _CLIENT_PID.append(os.getpid())
        if transaction_timeout > 0:
            raw.options.set_transaction_timeout(max(1, int(transaction_timeout * 1000)))
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
    db = FDBDatabase(raw, cluster_file, read_only=read_only, clock=clock)
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
            unreachable = mapped.code == TRANSACTION_TIMED_OUT
            why = f"no answer within {timeout:g} s" if unreachable else mapped.description
            failure = FDBKVError(
                mapped.code,
                f"cannot reach the FoundationDB cluster described by {where} ({why}); is the "
                "cluster running, and does the cluster file list its coordinators?",
                fdb_error=error,
            )
            failure.unreachable = unreachable
            raise failure from error


def _resolved_cluster_file(cluster_file: str | None) -> str | None:
    """The absolute path of the cluster file the binding uses for ``cluster_file``, where it can
    be told without the C library ($FDB_CLUSTER_FILE, ./fdb.cluster); None: the platform's
    default, which a child process resolves the same way."""
    if cluster_file:
        return os.path.abspath(cluster_file)
    named = os.environ.get("FDB_CLUSTER_FILE")
    if named:
        return os.path.abspath(named)
    if os.path.exists("fdb.cluster"):
        return os.path.abspath("fdb.cluster")
    return None


class FDBDatabase(Database):
    """Our ``Database`` over an ``fdb.Database`` (``raw``). ``transaction_timeout`` (seconds) is
    set on each transaction when the database-wide option was not set at open (a raw database
    the user opened keeps its own options)."""

    #: The binding's network thread does not survive fork(), and ``fdb.open`` in a forked child
    #: returns the parent's dead database: children must be spawned and open ``url`` afresh.
    reopen_after_fork = False

    def __init__(
        self,
        raw: Any,
        cluster_file: str | None = None,
        *,
        read_only: bool = False,
        clock: TimeSource | None = None,
        transaction_timeout: float = 0.0,
    ) -> None:
        self._db = raw
        self.cluster_file = _resolved_cluster_file(cluster_file)
        self.url = f"fdb://{self.cluster_file or ''}"
        self.read_only = read_only
        self._clock = clock
        self._timeout_ms = int(transaction_timeout * 1000)
        self._closed = False
        self._pid = os.getpid()
        self._version_clock = VersionClock(self, writable=not read_only)
        self._watch_lock = threading.Lock()
        self._watch: tuple[Any, threading.Event] | None = None

    @property
    def raw(self) -> Any:
        """The binding's ``fdb.Database``."""
        return self._db

    def create_transaction(self) -> FDBTransaction:
        if self._closed:
            raise KVError(CLIENT_INVALID_OPERATION, f"database {self.url} is closed")
        if self._pid != os.getpid():  # a forked child would wait forever for an answer
            raise KVError(CLIENT_INVALID_OPERATION, FORKED)
        tr = FDBTransaction(self._db.create_transaction(), read_only=self.read_only)
        if self._timeout_ms > 0:
            tr.options.set_timeout(self._timeout_ms)
        return tr

    def store_time(self) -> float:
        """The injected clock's time, else the time derived from the cluster's read version,
        the same on every host (``store_clock``)."""
        if self._clock is not None:
            return self._clock.now()
        return self._version_clock.now()

    # -- idle wake-ups ----------------------------------------------------------------------
    def notify_change(self, tr: Transaction) -> None:
        """Bump ``CHANGE_KEY`` in ``tr`` (an atomic add: concurrent enqueues never conflict on
        it), which wakes every ``wait_for_change`` once ``tr`` commits."""
        tr.add(CHANGE_KEY, _ONE)

    def wait_for_change(self, timeout: float) -> None:
        """Return once ``CHANGE_KEY`` changed (an enqueue committed), or after ``timeout``.
        One watch serves every waiting thread and is renewed only after it fired. A watch that
        failed (the cluster does not answer, too many watches) is no change: this then waits
        out ``timeout``, so an idle consumer never spins."""
        deadline = time.monotonic() + timeout
        watch = self._current_watch()
        if watch is None:
            time.sleep(timeout)
            return
        future, event = watch
        if not event.wait(timeout) or self._closed:
            return
        try:
            future.wait()  # ready: returns at once, or raises the watch's error
        except Exception:  # noqa: BLE001 - any failure of the watch means "no news"
            with self._watch_lock:
                if self._watch is watch:
                    self._watch = None
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _current_watch(self) -> tuple[Any, threading.Event] | None:
        with self._watch_lock:
            if self._watch is not None and not self._watch[1].is_set():
                return self._watch
            if self._closed:
                return None
            event = threading.Event()
            try:
                tr = self.create_transaction()
                future = tr.watch(CHANGE_KEY)
                tr.commit()  # a watch starts when its transaction commits
                future.on_ready(lambda _future: event.set())
            except KVError:
                self._watch = None
                return None
            self._watch = (future, event)  # the future is kept: dropping it cancels the watch
            return self._watch

    def close(self) -> None:
        """The binding has no close (its network thread stops at exit): this only refuses new
        transactions from this object and releases the watch."""
        self._closed = True
        with self._watch_lock:
            if self._watch is not None:
                self._watch[1].set()
                self._watch = None

    def __repr__(self) -> str:
        return f"<FDBDatabase {self.url}>"


def wrap_transaction(raw: Any) -> FDBTransaction:
    """A user's own ``fdb.Transaction`` as our ``Transaction``. The user owns its retry loop, so
    the binding's errors reach it unchanged (``fdb.FDBError``)."""
    return FDBTransaction(raw, user_owned=True)


def _cluster_file_of(raw: Any) -> str | None:
    """The cluster file ``raw`` was opened with, from the binding's cache of open databases
    (``fdb.open`` returns one ``Database`` per cluster file)."""
    import sys

    opened = getattr(sys.modules.get("fdb.impl"), "open_databases", None)
    if isinstance(opened, dict):
        for cluster_file, database in list(opened.items()):
            if database is raw:
                return str(cluster_file) if cluster_file else None
    return None


def wrap_database(raw: Any) -> FDBDatabase:
    """A user's own ``fdb.Database`` as our ``Database``: its url names the cluster file it was
    opened with (so another process can open it again), and each of our transactions on it is
    bounded by ``DEFAULT_TRANSACTION_TIMEOUT`` without changing the user's database options."""
    return FDBDatabase(
        raw, _cluster_file_of(raw), transaction_timeout=DEFAULT_TRANSACTION_TIMEOUT
    )
