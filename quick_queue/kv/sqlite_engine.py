"""The embedded engine: FoundationDB's transaction semantics on one durable SQLite file.

How a commit works, and why:

* Each transaction reads through a pooled connection holding one WAL read snapshot; the
  database's version counter read inside that snapshot is the transaction's read version.
* Commits go through a *group commit*: the first committing thread of a process becomes the
  leader, takes every commit request queued meanwhile, and resolves and applies them all under
  one SQLite write transaction, so one fsync makes a whole batch durable. This is what
  FoundationDB's commit proxies do, and it is the only way past SQLite's ~5k fsynced commits/s.
* Resolution follows FoundationDB: in order, each request's read-conflict ranges are checked
  against the write ranges of every batch committed after its read version (``qq_log``, shared
  by all processes on the file) and against the requests accepted earlier in this batch. A hit
  is ``not_committed`` (1020). One batch gets one commit version; the versionstamp of a request
  is that version and its position in the batch, FoundationDB's 10-byte layout.
* ``qq_log`` keeps a few seconds of write ranges for other processes; each process mirrors the
  part it needs in memory (``ConflictHistory``).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import shutil
import sqlite3
import tempfile
import threading
import time

from quick_queue.kv.api import Database, TimeSource
from quick_queue.kv.conflicts import ConflictHistory, Range, WriteSet
from quick_queue.kv.errors import (
    DATABASE_LOCKED,
    FILE_NOT_FOUND,
    NOT_COMMITTED,
    PERMISSION_DENIED,
    TRANSACTION_TOO_OLD,
    ConfigurationError,
    KVError,
    StorageError,
)
from quick_queue.kv.host_clock import HostClock
from quick_queue.kv.sqlite_commit import (
    Request,
    add_write_ranges,
    apply_batch,
    apply_request,
    storage_error,
)
from quick_queue.kv.sqlite_file import STORE_TABLES, check_file, connect_read_only
from quick_queue.kv.sqlite_reads import Entry
from quick_queue.kv.sqlite_transaction import LIFETIME, SQLiteTransaction
from quick_queue.kv.wakeup import CommitSignal

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS qq_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS qq_log "
    "(version INTEGER PRIMARY KEY, at REAL NOT NULL, ranges BLOB NOT NULL)",
    "INSERT OR IGNORE INTO qq_meta (name, value) VALUES ('format', 1)",
    # The newest log row carries the database version: pruning always keeps it.
    "INSERT OR IGNORE INTO qq_log (version, at, ranges) VALUES (0, 0, X'')",
)
# History kept for other processes: longer than a transaction may live, with room for clock skew.
LOG_SECONDS = LIFETIME * 2
CHECKPOINT_EVERY = 1000  # commits between background checkpoints under load
CHECKPOINT_SECONDS = 1.0  # ... and at most this long between them otherwise
SYNCHRONOUS = ("FULL", "NORMAL", "OFF")


class SQLiteDatabase(Database):
    """The embedded engine. ``synchronous="FULL"`` (the default) makes every acknowledged commit
    survive power loss; ``"NORMAL"`` survives a process crash but may lose the last commits on
    power loss, for about twice the commit rate.

    ``read_only=True`` opens an existing store without writing to its file (no tables created,
    no WAL switch, no checkpoint; it works on a file the process may not write); commits that
    write raise ``StorageError``. An existing SQLite database of another application is refused
    (``ForeignDatabase``) unless ``adopt=True``. ``clock`` (anything with ``now()``) replaces
    the host's clock as the store's time (``store_time``), for tests."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        ephemeral: bool = False,
        busy_timeout: float = 30.0,
        read_only: bool = False,
        adopt: bool = False,
        clock: TimeSource | None = None,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS:
            raise ConfigurationError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        if ephemeral and read_only:
            raise ConfigurationError("an ephemeral database cannot be read-only: it starts empty")
        if not ephemeral:
            check_file(path, read_only=read_only, adopt=adopt)
        self.path = path
        self.read_only = read_only
        self._clock = clock
        self.synchronous = synchronous
        self.ephemeral = ephemeral
        self._tempdir: str | None = None
        if ephemeral:
            self._tempdir = tempfile.mkdtemp(prefix="quick_queue-")
            self.path = os.path.join(self._tempdir, "ephemeral.db")
            self.url = "memory://"
        else:
            self.url = "sqlite:///" + path
        self._busy_timeout = busy_timeout
        self._closed = False
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._all_connections: list[sqlite3.Connection] = []
        self._pending: list[Request] = []
        self._commit_cond = threading.Condition(threading.Lock())
        self._leading = False
        self._signal = CommitSignal(self.path)
        self._signal_ok = True
        self._watch_conn: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        self._last_prune = 0.0
        self._writer = self._connect()
        if read_only:
            self._open_read_only()
            return
        # Checkpoints (copying the WAL back into the database file, with an fsync of it) run
        # in a background thread instead of inside whichever commit crosses SQLite's
        # threshold: that commit would otherwise wait several milliseconds (pick-up latency).
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_wake = threading.Event()
        self._commits_since_checkpoint = 0
        try:
            for statement in SCHEMA:
                self._writer.execute(statement)
            version = self._current_version(self._writer)
        except sqlite3.Error as error:
            self.close()
            raise storage_error(self.path, error, "creating its tables") from error
        self._start_history(version)

    def _start_history(self, version: int) -> None:
        self._history = ConflictHistory(floor=version)
        self._writer_data_version = -1
        self._writer_level = self.synchronous
        self._seen = version

    def _open_read_only(self) -> None:
        self._checkpointer = None
        self._checkpoint_wake = threading.Event()
        self._commits_since_checkpoint = 0
        try:
            tables = {
                str(row[0])
                for row in self._writer.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not STORE_TABLES <= tables:  # replaced since check_file looked
                raise sqlite3.DatabaseError("not a quick_queue store")
            version = self._current_version(self._writer)
        except sqlite3.Error as error:
            self.close()
            raise storage_error(self.path, error, "opening it read-only") from error
        self._start_history(version)

    def store_time(self) -> float:
        """The injected clock's time, else the host's boot clock anchored once per boot in
        this file (``kv/host_clock.py``): every process using the file runs on this host and
        reads that one clock, which no wall-clock step or skewed process clock moves."""
        clock = self._clock
        if clock is None:
            clock = self._clock = HostClock(self._connect, read_only=self.read_only)
        return clock.now()

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if not self.ephemeral:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise StorageError(
                    FILE_NOT_FOUND, f"{self.path}: folder {folder} does not exist", path=self.path
                )
        try:
            if self.read_only:
                conn = connect_read_only(
                    self.path, timeout=self._busy_timeout, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=64,
                )
            if self.read_only:
                conn.execute("PRAGMA query_only=ON")  # a second guard: SQLite refuses writes
            else:
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as error:
            raise storage_error(self.path, error, "opening") from error
        self._all_connections.append(conn)
        return conn

    def _current_version(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT max(version) FROM qq_log").fetchone()
        return int(row[0])

    def _begin_read(self) -> tuple[sqlite3.Connection, int]:
        """A connection inside a fresh read snapshot, and the version that snapshot shows."""
        if self._closed:
            raise KVError(2000, f"database {self.url} is closed")
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        try:
            conn.execute("BEGIN")
            version = self._current_version(conn)
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise storage_error(self.path, error, "reading") from error
        return conn, version

    def _end_read(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            return
        if self._closed:
            return
        with self._pool_lock:
            self._pool.append(conn)

    def _reading_failed(self, error: sqlite3.Error) -> StorageError:
        return storage_error(self.path, error, "reading")

    def create_transaction(self) -> SQLiteTransaction:
        if self._closed:
            raise KVError(2000, f"database {self.url} is closed")
        return SQLiteTransaction(self)

    # -- group commit -----------------------------------------------------------------------
    def _commit(
        self,
        read_version: int | None,
        reads: list[Range],
        writes: dict[bytes, Entry],
        cleared: list[Range],
        stamped: list[tuple[bytes, bytes]],
        extra_writes: list[Range],
        relaxed: bool = False,
    ) -> bytes:
        if self.read_only:
            raise StorageError(
                PERMISSION_DENIED,
                f"{self.path} was opened read-only: this transaction's writes were not "
                "committed (open it without read_only to write)",
                path=self.path,
            )
        request = Request(read_version, reads, writes, cleared, stamped, extra_writes)
        request.relaxed = relaxed
        cond = self._commit_cond
        with cond:
            self._pending.append(request)
            while not request.done:
                if self._leading:
                    cond.wait()
                    continue
                # No batch is in flight: this thread leads the next one, which carries every
                # request queued while the previous batch was being made durable.
                self._leading = True
                batch, self._pending = self._pending, []
                cond.release()
                try:
                    self._run_batch(batch)
                finally:
                    cond.acquire()
                    self._leading = False
                    cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.stamp is not None
        return request.stamp

    def _sync_history(self, conn: sqlite3.Connection) -> int:
        """Mirror the batches other processes committed since we last looked."""
        # data_version moves only when another connection committed: skip the query otherwise.
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version == self._writer_data_version:
            return self._seen
        self._writer_data_version = data_version
        rows = conn.execute(
            "SELECT version, at, ranges FROM qq_log WHERE version > ? ORDER BY version",
            (self._seen,),
        ).fetchall()
        current = self._current_version(conn)
        expected = self._seen + 1
        for version, at, blob in rows:
            if version != expected:
                self._history.note_gap(version - 1)
            writes = WriteSet()
            writes.add_all(marshal.loads(blob) if blob else [])
            self._history.append(version, at, writes)
            expected = version + 1
        if current >= expected:
            self._history.note_gap(current)
        self._seen = current
        return current

    def _run_batch(self, batch: list[Request]) -> None:
        conn = self._writer
        try:
            if self._closed:
                raise KVError(2000, f"database {self.url} is closed")
            # A batch of relaxed commits only is not synced; the next durable batch syncs it.
            # (SQLite refuses to change the level inside a transaction: it is set first.)
            level = "NORMAL" if all(r.relaxed for r in batch) else self.synchronous
            if self.synchronous == "FULL" and level != self._writer_level:
                conn.execute(f"PRAGMA synchronous={level}")
                self._writer_level = level
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if "locked" in str(error) or "busy" in str(error):
                    raise KVError(
                        DATABASE_LOCKED, f"{self.path} stayed locked by another process"
                    ) from error
                raise storage_error(self.path, error, "committing") from error
            try:
                self._resolve_and_apply(conn, batch)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except KVError as error:
            for request in batch:
                if not request.done:
                    request.error = error
                    request.done = True
        except sqlite3.Error as error:
            failure = storage_error(self.path, error, "committing")
            for request in batch:
                if not request.done:
                    request.error = failure
                    request.done = True
        finally:
            for request in batch:
                if not request.done:  # an unexpected exception escaped: fail, never hang
                    request.error = KVError(4000, "commit aborted by an internal error")
                    request.done = True

    def _resolve_and_apply(self, conn: sqlite3.Connection, batch: list[Request]) -> None:
        current = self._sync_history(conn)
        version = current + 1
        accepted: list[Request] = []
        batch_writes = WriteSet()
        history = self._history
        for request in batch:
            read_version = request.read_version if request.read_version is not None else current
            if read_version < history.floor:
                request.error = KVError(TRANSACTION_TOO_OLD)
            elif request.reads and (
                batch_writes.intersects(request.reads)
                or history.conflicts(request.reads, read_version)
            ):
                request.error = KVError(NOT_COMMITTED)
            else:
                accepted.append(request)
                add_write_ranges(batch_writes, request)
                continue
            request.done = True
        if not accepted:
            conn.execute("ROLLBACK")
            return
        now = time.time()
        head = version.to_bytes(8, "big")
        if len(accepted) == 1:  # the usual batch: no merging (see sqlite_commit.BatchWriter)
            stamps = [head + b"\x00\x00"]
            apply_request(conn, accepted[0], stamps[0], batch_writes)
        else:
            stamps = [head + order.to_bytes(2, "big") for order in range(len(accepted))]
            apply_batch(conn, list(zip(accepted, stamps, strict=True)), batch_writes)
        # This row is also the database version, so even a handle alone on the file writes it
        # (issue 10, measured: moving the version to a row of its own to skip this insert
        # when alone saved no instructions per commit and cost 5 % with two handles).
        conn.execute(
            "INSERT INTO qq_log (version, at, ranges) VALUES (?, ?, ?)",
            (version, now, marshal.dumps(batch_writes.as_list())),
        )
        if now - self._last_prune > 1.0:
            self._last_prune = now
            conn.execute(
                "DELETE FROM qq_log WHERE at < ? AND version < ?", (now - LOG_SECONDS, version)
            )
            history.prune(now - LOG_SECONDS)
        conn.execute("COMMIT")
        history.append(version, now, batch_writes)
        self._commits_since_checkpoint += 1
        if self._checkpointer is None:
            self._start_checkpointer()
        elif self._commits_since_checkpoint >= CHECKPOINT_EVERY:
            self._checkpoint_wake.set()
        self._seen = version
        for request, stamp in zip(accepted, stamps, strict=True):
            request.stamp = stamp
            request.done = True
        self._signal.notify()

    # -- checkpoints ------------------------------------------------------------------------
    def _start_checkpointer(self) -> None:
        thread = threading.Thread(
            target=self._checkpoint_loop, name="quick_queue-checkpoint", daemon=True
        )
        self._checkpointer = thread
        thread.start()

    def _checkpoint_loop(self) -> None:
        try:
            conn = self._connect()
        except KVError:
            return
        while not self._closed:
            self._checkpoint_wake.wait(CHECKPOINT_SECONDS)
            self._checkpoint_wake.clear()
            if self._closed or not self._commits_since_checkpoint:
                continue
            self._commits_since_checkpoint = 0
            # PASSIVE never blocks writers or readers; frames a reader still needs are copied
            # on a later round.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- idle wake-up -----------------------------------------------------------------------
    def wait_for_change(self, timeout: float) -> None:
        """Return soon after any commit to the file (this process's or another's), or after
        ``timeout``: a Unix-socket signal from the committer (``wakeup.CommitSignal``), or
        where sockets are unavailable, polling ``PRAGMA data_version`` (SQLite's shared memory,
        no I/O) every millisecond."""
        if self._signal_ok:
            try:
                self._signal.wait(timeout)
                return
            except OSError:
                self._signal_ok = False
        deadline = time.monotonic() + timeout
        start = self._data_version()
        while time.monotonic() < deadline:
            time.sleep(min(0.001, max(0.0, deadline - time.monotonic())))
            if self._data_version() != start:
                return

    def _data_version(self) -> int:
        with self._watch_lock:
            if self._closed:
                return -1
            if self._watch_conn is None:
                self._watch_conn = self._connect()
            row = self._watch_conn.execute("PRAGMA data_version").fetchone()
            return int(row[0])

    # -- operations -------------------------------------------------------------------------
    def integrity_check(self) -> str:
        """SQLite's own check of the file ('ok' when sound, else what is wrong)."""
        try:
            rows = self._writer.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as error:  # too damaged for the check to walk it
            return str(error)
        return "\n".join(str(row[0]) for row in rows)

    def durability(self) -> dict[str, object]:
        return {"engine": "sqlite", "path": self.path, "journal_mode": "wal",
                "synchronous": self.synchronous, "group_commit": True}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._checkpoint_wake.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        with self._commit_cond, self._pool_lock, self._watch_lock:
            for conn in self._all_connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all_connections.clear()
            self._pool.clear()
        self._signal.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<SQLiteDatabase {self.url} synchronous={self.synchronous}>"
