"""The embedded engine: FoundationDB's transaction semantics on one durable SQLite file.

* Each transaction reads through a pooled connection holding one WAL read snapshot; the
  database's version counter read inside that snapshot is the transaction's read version.
* Its commit goes through the group commit of ``sqlite_group_commit`` (a mixin of this class),
  which explains how a batch is resolved, applied and made durable, and checkpointed.
* ``wait_for_change`` wakes idle consumers on any commit to the file (``wakeup.CommitSignal``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time

from quick_queue.kv.api import Database, TimeSource
from quick_queue.kv.conflicts import ConflictHistory
from quick_queue.kv.errors import FILE_NOT_FOUND, ConfigurationError, KVError, StorageError
from quick_queue.kv.host_clock import HostClock
from quick_queue.kv.sqlite_commit import storage_error
from quick_queue.kv.sqlite_file import (
    STORE_TABLES,
    check_file,
    connect_read_only,
    current_version,
)
from quick_queue.kv.sqlite_group_commit import LOG_SECONDS as LOG_SECONDS  # re-exported
from quick_queue.kv.sqlite_group_commit import GroupCommit
from quick_queue.kv.sqlite_transaction import SQLiteTransaction
from quick_queue.kv.sqlite_writer_turn import WriterTurn
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
SYNCHRONOUS = ("FULL", "NORMAL", "OFF")
# The page size of a new store (an existing file keeps its own). SQLite keeps a record in its
# B-tree leaf only up to about a quarter of a page (230 bytes of key and value at 1 kB pages,
# 1,002 at 4 kB); past that the rest goes to an overflow page, which every rewrite of the
# record allocates anew and frees again (and Debian's SQLite zeroes each freed page, one more
# page written). With 1 kB pages a leased no-op job's record (~230 bytes with its token) sat
# on that edge, and any payload past ~20 bytes crossed it. Measured (issue 10, ninth pass,
# the peer harness, quick_queue alone, two interleaved rounds): 4 kB against 1 kB pages, a
# drain of 20k no-op jobs 48.4-57.6k against 44.3-45.9k a second (one tenant) and 43.9-45.3k
# against 36.7-38.3k (1,000 tenants); enqueue one per transaction 5,141-5,451 against
# 5,057-5,522, the same. In-process drains with 300-byte payloads 31-39k against 21-28k.
# 8 kB pages drained no faster and enqueued 5-15 % slower. Records over ~1 kB overflow at
# 4 kB too (a drain of 1,000-byte payloads was 10-15 % slower than at 1 kB pages).
# (The seventh pass chose 1 kB pages by the CPU of an enqueue-shaped commit alone.)
PAGE_SIZE = 4096
_ABSENT = object()  # (a cached value may be None: the key is known to be absent)
# The snapshot's version (``sqlite_file.current_version``) and one key's value in one statement.
VERSION_AND_VALUE = "SELECT (SELECT max(version) FROM qq_log), (SELECT v FROM kv WHERE k = ?)"


class SQLiteDatabase(Database, GroupCommit):
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
        # Read connections, each by a cursor of its own kept with it: ``execute`` on a
        # connection makes a cursor each time (measured ~1.1k instructions a statement).
        self._pool: list[sqlite3.Cursor] = []
        self._pool_lock = threading.Lock()
        self._all_connections: list[sqlite3.Connection] = []
        self._init_group_commit()
        self._signal = CommitSignal(self.path)
        # Beside the wake-up sockets (a folder of ours), not beside the user's database file.
        # An ephemeral store has one handle and no other process: no turns to take.
        self._turn = WriterTurn(
            os.path.join(self._signal.folder, "writer.turn"), busy_timeout, usable=not ephemeral
        )
        self._signal_ok = True
        self._watch_conn: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        self._writer = self._connect()
        self._writer_cursor = self._writer.cursor()  # (used under the read cache's lock)
        if read_only:
            self._open_read_only()
            return
        # Checkpoints run in a background thread (see sqlite_group_commit), not in a commit.
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        # Deleted rows are zeroed where their page is written anyway, but a page freed whole is
        # not written again just to zero it. SQLite's own default is OFF; Debian's build turns
        # it ON, which adds a frame to the WAL for every page a settle or a lease empties.
        # Measured (issue 10, twelfth pass; 20,000 no-op jobs over 1,000 tenants in one
        # process, 2 rounds interleaved): the write turn held 724-734 µs of CPU a commit
        # against 750-816 with ON, 32.3-33.4k jobs/s against 30.9-32.1k. The cost: text of
        # finished jobs can stay in free pages of the file until SQLite reuses them, as it
        # does in most databases' files.
        self._writer.execute("PRAGMA secure_delete=FAST")
        try:
            for statement in SCHEMA:
                self._writer.execute(statement)
            version = current_version(self._writer)
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
        try:
            tables = {
                str(row[0])
                for row in self._writer.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not STORE_TABLES <= tables:  # replaced since check_file looked
                raise sqlite3.DatabaseError("not a quick_queue store")
            version = current_version(self._writer)
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
                # Only a new, empty file takes it (SQLite ignores it once the file has pages).
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as error:
            raise storage_error(self.path, error, "opening") from error
        self._all_connections.append(conn)
        return conn

    def _begin_read(self, key: bytes | None = None) -> tuple[sqlite3.Cursor, int, bytes | None]:
        """A connection inside a fresh read snapshot, the version that snapshot shows, and
        with ``key`` its stored value: the first read of a transaction is folded into the
        statement that reads the version (issue 10: one statement less per transaction,
        measured 5-8 µs of CPU, and one interpreter-lock release less)."""
        if self._closed:
            raise KVError(2000, f"database {self.url} is closed")
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect().cursor()
        value: bytes | None = None
        try:
            conn.execute("BEGIN")
            if key is None:
                version = current_version(conn)
            else:
                # bytearray: see sqlite_commit.BLOB_COPY
                version, value = conn.execute(VERSION_AND_VALUE, (bytearray(key),)).fetchone()
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise storage_error(self.path, error, "reading") from error
        return conn, version, value

    def _cached_read(
        self, key: bytes, *, proven: bool = True
    ) -> tuple[int, bytes | None] | None:
        """``(version, value)``: ``key``'s latest committed value from the read cache and the
        version it is current at, or None when that cannot be proven without a snapshot (see
        ``sqlite_read_cache``): not cached, a batch in progress, or another connection
        committed since the writer last mirrored the log. ``proven=False``: the cache's value
        at its version even if another connection committed since (``get_before_write``:
        the commit proves it)."""
        cache = self._read_cache
        if not proven:
            return self._unproven_read(key)
        if key not in cache.values or not cache.lock.acquire(blocking=False):
            return None
        try:
            if self._closed:
                return None
            if proven:
                # Fully fetched: the statement is reset, no read transaction stays open on the
                # writer's connection.
                changes = self._writer_cursor.execute("PRAGMA data_version").fetchall()[0][0]
                if changes != self._writer_data_version:
                    self._quiet = 0  # the next batch reads the log (and data_version) first
                    return None
            values = cache.values  # changed only by holders of the lock
            if key not in values:
                return None
            return self._seen, values[key]
        except sqlite3.Error:
            return None  # the snapshot path reports what is wrong
        finally:
            cache.lock.release()

    def _unproven_read(self, key: bytes) -> tuple[int, bytes | None] | None:
        """``_cached_read(key, proven=False)`` without the cache's lock, so also while a batch
        holds it (its fsync): what producer threads do meanwhile. Sound because the leader
        changes a key's cached value (a commit of ours, or dropped for another connection's)
        before it moves ``_seen`` past that commit: the version is read first, so the value
        is at least as new as it; a newer one only makes the commit's check from the older
        version find that write and fail with 1020, never miss one. Measured (issue 10,
        8 producer threads of one process): the served read fell back to a snapshot in most
        enqueues, since some batch is nearly always in progress."""
        if self._closed:
            return None
        version = self._seen
        value = self._read_cache.values.get(key, _ABSENT)
        if value is _ABSENT:
            return None
        return version, value  # type: ignore[return-value]

    def _remember_read(self, key: bytes, version: int, value: bytes | None) -> None:
        """A first read's value at its snapshot's ``version``: cached when that is the cache's
        version (and no batch holds the cache)."""
        cache = self._read_cache
        if version != self._seen or not cache.lock.acquire(blocking=False):
            return
        try:
            if version == self._seen:
                cache.remember(key, value)
        finally:
            cache.lock.release()

    def _snapshot_bound(self, keys: list[bytes]) -> None:
        """Served keys whose transaction then took a snapshot (``ReadCache.bound``)."""
        cache = self._read_cache
        if cache.lock.acquire(blocking=False):  # else: marked by a later transaction
            try:
                cache.snapshot_bound(keys)
            finally:
                cache.lock.release()

    def _end_read(self, conn: sqlite3.Cursor) -> None:
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
        with self._commit_lock, self._pool_lock, self._watch_lock:
            for conn in self._all_connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all_connections.clear()
            self._pool.clear()
        self._signal.close()
        self._turn.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<SQLiteDatabase {self.url} synchronous={self.synchronous}>"
