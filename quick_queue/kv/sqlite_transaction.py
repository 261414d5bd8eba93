"""A transaction of the embedded engine: reads at one SQLite snapshot, writes buffered in memory
(read-your-writes), read/write conflict ranges kept for the commit-time check.

The read version is taken at the first read (or at commit for a transaction that never read), as
FoundationDB does. Reads inside the write buffer's reach are answered from it and add no read
conflict, as FoundationDB's read-your-writes layer does.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from quick_queue.kv.api import (
    RetryState,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.conflicts import Range, split_reads
from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    INVERTED_RANGE,
    NOT_COMMITTED,
    NOT_YET_COMMITTED,
    TRANSACTION_TIMED_OUT,
    TRANSACTION_TOO_LARGE,
    TRANSACTION_TOO_OLD,
    USED_DURING_COMMIT,
    KVError,
)
from quick_queue.kv.sqlite_reads import Entry, SnapshotView
from quick_queue.kv.sqlite_writes import SQLiteWrites

if TYPE_CHECKING:
    from quick_queue.kv.sqlite_engine import SQLiteDatabase

MAX_TRANSACTION = 10_000_000
LIFETIME = 5.0
NO_COMMIT_VERSION = 2021  # FoundationDB's error for the versionstamp of a read-only commit

class _Stamp(VersionstampFuture):
    def __init__(self) -> None:
        self.value: bytes | None = None
        self.error: KVError | None = None

    def wait(self) -> bytes:
        if self.value is not None:
            return self.value
        raise self.error or KVError(CLIENT_INVALID_OPERATION, NOT_YET_COMMITTED)


class SQLiteTransaction(SQLiteWrites):
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self.options = TransactionOptions()
        self.snapshot = SnapshotView(self)
        # Made by the first on_error (most transactions commit at once).
        self._retry: RetryState | None = None
        self._conn: sqlite3.Cursor | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._created = time.monotonic()
        self._read_version: int | None = None
        self._read_at = 0.0
        # Reads served from the database's read cache before the transaction had a snapshot:
        # (key, value) at ``_read_version`` (see ``_rebase``).
        self._served: list[tuple[bytes, bytes | None]] = []
        # Some served read is not proven the latest (``get_before_write``): a commit without
        # writes proves it itself (``commit``).
        self._unproven = False
        # The first read (key, version, value) while it is the transaction's only read: kept
        # by the read cache at commit (see ``commit``).
        self._solo: tuple[bytes, int, bytes | None] | None = None
        self._writes: dict[bytes, Entry] = {}
        self._index: list[bytes] = []
        self._cleared: list[Range] = []
        self._stamped_keys: list[tuple[bytes, bytes]] = []
        # Read conflicts: the keys of point reads (a set: the resolver checks them against a
        # batch's written keys in one ``isdisjoint``), and every other range. Kept apart as
        # they are read, instead of a (key, key + 0x00) pair a point that the commit then
        # told apart again (``conflicts.split_reads``): a dequeue and a settle read 1-3
        # records a job.
        self._read_keys: set[bytes] = set()
        self._reads: list[Range] = []
        self._extra_writes: list[Range] = []
        self._size = 0
        self._committed = False
        self._stamp: _Stamp | None = None
        # FoundationDB's writes return nothing: an invalid one (too large, outside the legal
        # range) is reported by the next read and by the commit, as the binding does.
        self._deferred: KVError | None = None

    # -- state checks -----------------------------------------------------------------------
    def _check(self) -> None:
        """Before a read or a commit: the transaction's state and any deferred write error."""
        self._check_state()
        if self._deferred is not None:
            raise self._deferred

    def _defer(self, error: KVError) -> None:
        if self._deferred is None:
            self._deferred = error

    def _check_state(self) -> None:
        if self._committed:
            raise KVError(USED_DURING_COMMIT, "transaction already committed; reset() to reuse it")
        timeout = self.options.timeout_ms
        if timeout and (time.monotonic() - self._created) * 1000.0 > timeout:
            raise KVError(TRANSACTION_TIMED_OUT)

    def _ensure_snapshot(self) -> sqlite3.Cursor:
        conn = self._conn
        if conn is None:
            self._first_read(None)
            assert self._conn is not None
            return self._conn
        if time.monotonic() - self._read_at > LIFETIME:
            raise KVError(TRANSACTION_TOO_OLD)
        self._solo = None  # a further read at this snapshot
        return conn

    def _first_read(self, key: bytes | None) -> bytes | None:
        """Take the transaction's snapshot; with ``key``, also its stored value, in the same
        statement (``SQLiteDatabase._begin_read``): the first read of a transaction (which
        the read cache may keep)."""
        if self._served:
            return self._rebase(key)
        conn, version, value = self._db._begin_read(key)
        self._conn = conn
        self._read_version = version
        self._read_at = time.monotonic()
        if key is not None:
            self._solo = (key, version, value)
        return value

    def _serve(self, key: bytes, version: int, value: bytes | None, *, proven: bool) -> bool:
        """Take ``value``, the read cache's value of ``key`` at ``version`` (the latest, if
        ``proven``), as this read's answer (the transaction has no snapshot yet): the first
        such read sets the read version; a later one must be at that same version (else the
        caller takes a snapshot)."""
        if self._read_version is None:
            self._read_version = version
            self._read_at = time.monotonic()
        elif version != self._read_version:
            return False
        elif time.monotonic() - self._read_at > LIFETIME:
            raise KVError(TRANSACTION_TOO_OLD)
        self._served.append((key, value))
        self._unproven = self._unproven or not proven
        return True

    def _rebase(self, key: bytes | None) -> bytes | None:
        """The snapshot of a transaction that was served from the read cache: opened at the
        latest version V, where the served keys are read again. Unchanged, V becomes the read
        version (the served values are V's, so every read of the transaction agrees with this
        one snapshot, and the commit checks conflicts from V). Changed, a commit wrote one of
        them after the transaction read it: it could only fail at commit, and it must not see
        that commit now beside the older value, so it fails at once with ``not_committed``
        (1020, retryable; the retry reads the new value). With ``key``, returns its value."""
        if time.monotonic() - self._read_at > LIFETIME:
            raise KVError(TRANSACTION_TOO_OLD)
        served = self._served
        self._db._snapshot_bound([key for key, _value in served])
        first, first_value = served[0]
        conn, version, value = self._db._begin_read(first)
        self._conn = conn
        changed = value != first_value
        for other, other_value in served[1:]:
            row = conn.execute("SELECT v FROM kv WHERE k = ?", (bytearray(other),)).fetchone()
            changed = changed or (row[0] if row is not None else None) != other_value
        if changed:
            self._release()
            raise KVError(
                NOT_COMMITTED, "a key this transaction read was written before its snapshot"
            )
        served.clear()
        self._read_version = version
        self._read_at = time.monotonic()
        if key is None:
            return None
        row = conn.execute("SELECT v FROM kv WHERE k = ?", (bytearray(key),)).fetchone()
        return row[0] if row is not None else None

    def _release(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._db._end_read(conn)

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown, closed database
            pass

    def get_before_write(self, key: bytes) -> bytes | None:
        """``SQLiteReads.get_before_write``, with its common case (the transaction's first
        read, a plain key it has not written, the read cache holds it) in one step: an
        enqueue's read of its zone's marker, through four calls otherwise."""
        if (
            self._read_version is None and type(key) is bytes and key < b"\xff"
            and not self._committed and self._deferred is None and not self.options.timeout_ms
            and key not in self._writes and not self._cleared
        ):
            hit = self._db._unproven_read(key)
            if hit is not None:
                self._serve(key, hit[0], hit[1], proven=False)  # (the first read: it takes it)
                self._read_keys.add(key)
                return hit[1]
        return super().get_before_write(key)

    def get_versionstamp(self) -> VersionstampFuture:
        self._check_state()
        if self._stamp is None:
            self._stamp = _Stamp()
        return self._stamp

    # -- conflicts and versions -------------------------------------------------------------
    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_state()
        if begin > end:
            raise KVError(INVERTED_RANGE)
        if begin < end:
            self._reads.append((begin, end))
            self._size += len(begin) + len(end)

    def add_write_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._check_state()
        if begin > end:
            raise KVError(INVERTED_RANGE)
        if begin < end:
            self._extra_writes.append((begin, end))
            self._size += len(begin) + len(end)

    def get_approximate_size(self) -> int:
        """Writes and explicit conflict ranges (``_size``) plus the read conflict ranges."""
        self._check_state()
        return (
            self._size + sum(len(begin) + len(end) for begin, end in self._reads)
            + sum(2 * len(key) + 1 for key in self._read_keys)
        )

    def get_read_version(self) -> int:
        self._check()
        self._ensure_snapshot()
        assert self._read_version is not None
        return self._read_version

    # -- life cycle -------------------------------------------------------------------------
    def commit(self) -> None:
        if self._committed or self._deferred is not None or self.options.timeout_ms:
            self._check()  # (raises, or checks the timeout)
        if (self._conn is not None or self._served) and (
            time.monotonic() - self._read_at > LIFETIME
        ):
            self._release()
            raise KVError(TRANSACTION_TOO_OLD)
        if self._size > MAX_TRANSACTION:
            raise KVError(TRANSACTION_TOO_LARGE)
        read_version = self._read_version
        if self._solo is not None:
            # Only a transaction that read one key is a reader the cache can serve whole
            # (an enqueue reads its zone's marker); a consumer's first read, followed by
            # range reads, would be served and then read again (see sqlite_read_cache).
            self._db._remember_read(*self._solo)
            self._solo = None
        if not (self._writes or self._cleared or self._stamped_keys or self._extra_writes):
            if self._unproven and self._served:
                # No commit will check the reads of get_before_write: a snapshot at the latest
                # version does (1020 if one changed since), as a read would have.
                self._rebase(None)
            self._release()
            self._committed = True  # read-only: nothing to resolve, like FoundationDB
            if self._stamp is not None:
                self._stamp.error = KVError(
                    NO_COMMIT_VERSION, "no versionstamp: the transaction wrote nothing"
                )
            return
        if self._conn is not None:
            self._release()
        if self._reads:  # explicit read conflicts and range reads (a point among them too)
            read_keys, read_spans = split_reads(self._reads)
            read_keys |= self._read_keys
        else:
            read_keys, read_spans = self._read_keys, []
        try:
            stamp = self._db._commit(
                read_version,
                read_keys,
                read_spans,
                self._writes,
                self._cleared,
                self._stamped_keys,
                self._extra_writes,
                self.options.relaxed_durability,
            )
        except KVError as error:
            if self._stamp is not None:
                self._stamp.error = error
            raise
        self._committed = True
        if self._stamp is not None:
            self._stamp.value = stamp

    def reset(self) -> None:
        self._release()
        self._init_state()
        self.options = TransactionOptions()
        self._retry = None

    def on_error(self, error: BaseException) -> None:
        self._release()
        # A first 1020 of a transaction served a possibly stale value by get_before_write is
        # most likely that value, not contention (another handle wrote the key since this one
        # cached it; the failed commit has dropped it from the cache): retried at once.
        # Measured (issue 10, pick-up latency): the first enqueue after a worker parked the
        # zone failed so in every run, and its 0-2 ms backoff was one of the few slowest
        # pick-ups the p99 of 200 jobs may have.
        retry = self._retry
        if retry is None:
            retry = self._retry = RetryState()
        stale = (
            self._unproven and not retry.retries
            and isinstance(error, KVError) and error.code == NOT_COMMITTED
        )
        retry.backoff_or_raise(error, self.options, at_once=stale)
        created = self._created  # the timeout option spans the retries, as in FoundationDB
        self._init_state()
        self._created = created
