"""A transaction of the embedded engine: reads at one SQLite snapshot, writes buffered in memory
(read-your-writes), read/write conflict ranges kept for the commit-time check.

The read version is taken at the first read (or at commit for a transaction that never read), as
FoundationDB does. Reads inside the write buffer's reach are answered from it and add no read
conflict, as FoundationDB's read-your-writes layer does.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from quick_queue.kv.api import (
    KeyValue,
    ReadView,
    RetryState,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
)
from quick_queue.kv.atomic import OPS, apply_ops, check_versionstamp_template
from quick_queue.kv.conflicts import Range
from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    INVERTED_RANGE,
    KEY_OUTSIDE_LEGAL_RANGE,
    KEY_TOO_LARGE,
    NOT_YET_COMMITTED,
    TRANSACTION_TIMED_OUT,
    TRANSACTION_TOO_LARGE,
    TRANSACTION_TOO_OLD,
    USED_DURING_COMMIT,
    VALUE_TOO_LARGE,
    KVError,
)

if TYPE_CHECKING:
    from quick_queue.kv.sqlite_engine import SQLiteDatabase

MAX_KEY = 10_000
MAX_VALUE = 100_000
MAX_TRANSACTION = 10_000_000
LIFETIME = 5.0
ACCESSED_UNREADABLE = 1036
NO_COMMIT_VERSION = 2021  # FoundationDB's error for the versionstamp of a read-only commit

# A write buffer entry: ("s", value) set, ("c", None) cleared, ("a", [(op, param)]) pending atomic
# operations on whatever the database holds, ("v", template) a versionstamped value.
Entry = tuple[str, object]


class _Stamp(VersionstampFuture):
    def __init__(self) -> None:
        self.value: bytes | None = None
        self.error: KVError | None = None

    def wait(self) -> bytes:
        if self.value is not None:
            return self.value
        raise self.error or KVError(CLIENT_INVALID_OPERATION, NOT_YET_COMMITTED)


class _Snapshot(ReadView):
    __slots__ = ("_tr",)

    def __init__(self, tr: SQLiteTransaction) -> None:
        self._tr = tr

    def get(self, key: bytes) -> bytes | None:
        return self._tr._get(key, conflict=False)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self._tr._get_range(begin, end, limit, reverse, conflict=False)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._tr._get_many(keys, conflict=False)


class SQLiteTransaction(Transaction):
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db
        self.options = TransactionOptions()
        self.snapshot = _Snapshot(self)
        self._retry = RetryState()
        self._conn: sqlite3.Connection | None = None
        self._init_state()

    def _init_state(self) -> None:
        self._created = time.monotonic()
        self._read_version: int | None = None
        self._read_at = 0.0
        self._writes: dict[bytes, Entry] = {}
        self._cleared: list[Range] = []
        self._stamped_keys: list[tuple[bytes, bytes]] = []
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

    def _check_read_key(self, key: bytes) -> None:
        # FoundationDB refuses reads at and past \xff (its system keys) unless asked.
        limit = b"\xff\xff" if self.options.read_system_keys else b"\xff"
        if key >= limit:
            raise KVError(KEY_OUTSIDE_LEGAL_RANGE, f"read of {key[:16]!r}... at or past {limit!r}")

    def _check_state(self) -> None:
        if self._committed:
            raise KVError(USED_DURING_COMMIT, "transaction already committed; reset() to reuse it")
        timeout = self.options.timeout_ms
        if timeout and (time.monotonic() - self._created) * 1000.0 > timeout:
            raise KVError(TRANSACTION_TIMED_OUT)

    def _ensure_snapshot(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn, version = self._db._begin_read()
            self._conn = conn
            self._read_version = version
            self._read_at = time.monotonic()
        elif time.monotonic() - self._read_at > LIFETIME:
            raise KVError(TRANSACTION_TOO_OLD)
        return conn

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

    # -- reads ------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        return self._get(key, conflict=True)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self._get_range(begin, end, limit, reverse, conflict=True)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._get_many(keys, conflict=True)

    def _get_many(self, keys: list[bytes], *, conflict: bool) -> list[bytes | None]:
        if len(keys) < 3:
            return [self._get(key, conflict=conflict) for key in keys]
        self._check()
        for key in keys:
            self._check_read_key(key)
        # Keys the write buffer answers completely are served from it; the rest in one query.
        wanted = [
            key for key in keys
            if (entry := self._writes.get(key)) is None
            or entry[0] == "a"
        ]
        wanted = [k for k in wanted if not (k not in self._writes and self._in_cleared(k))]
        stored: dict[bytes, bytes] = {}
        if wanted:
            conn = self._ensure_snapshot()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                stored.update(
                    conn.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", chunk).fetchall()
                )
            if conflict:
                self._reads.extend((key, key + b"\x00") for key in wanted)
        out: list[bytes | None] = []
        for key in keys:
            entry = self._writes.get(key)
            if entry is None:
                out.append(stored.get(key))
            elif entry[0] == "s":
                out.append(entry[1])  # type: ignore[arg-type]
            elif entry[0] == "c":
                out.append(None)
            elif entry[0] == "a":
                out.append(apply_ops(stored.get(key), entry[1]))  # type: ignore[arg-type]
            else:
                raise KVError(ACCESSED_UNREADABLE, "read of a versionstamped value before commit")
        return out

    def _in_cleared(self, key: bytes) -> bool:
        for begin, end in self._cleared:
            if begin <= key < end:
                return True
        return False

    def _get(self, key: bytes, *, conflict: bool) -> bytes | None:
        try:
            return self._get_inner(key, conflict)
        except sqlite3.Error as error:  # a corrupt page shows up on the read that meets it
            raise self._db._reading_failed(error) from error

    def _get_inner(self, key: bytes, conflict: bool) -> bytes | None:
        self._check()
        self._check_read_key(key)
        entry = self._writes.get(key)
        if entry is not None:
            kind, data = entry
            if kind == "s":
                return data  # type: ignore[return-value]
            if kind == "c":
                return None
            if kind == "v":
                raise KVError(ACCESSED_UNREADABLE, "read of a versionstamped value before commit")
        elif self._cleared and self._in_cleared(key):
            return None
        conn = self._ensure_snapshot()
        row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if conflict:
            self._reads.append((key, key + b"\x00"))
        value: bytes | None = row[0] if row is not None else None
        if entry is not None:  # pending atomic operations over the stored value
            return apply_ops(value, entry[1])  # type: ignore[arg-type]
        return value

    def _db_rows(
        self, conn: sqlite3.Connection, begin: bytes, end: bytes, reverse: bool, page: int
    ) -> Iterator[KeyValue]:
        if reverse:
            sql = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT ?"
        else:
            sql = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?"
        lo, hi = begin, end
        while True:
            rows = conn.execute(sql, (lo, hi, page)).fetchall()
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1][0]
            if reverse:
                hi = last
            else:
                lo = last + b"\x00"
            page = min(page * 4, 4096)

    def _get_range(
        self, begin: bytes, end: bytes, limit: int, reverse: bool, *, conflict: bool
    ) -> list[KeyValue]:
        try:
            return self._get_range_inner(begin, end, limit, reverse, conflict)
        except sqlite3.Error as error:
            raise self._db._reading_failed(error) from error

    def _get_range_inner(
        self, begin: bytes, end: bytes, limit: int, reverse: bool, conflict: bool
    ) -> list[KeyValue]:
        self._check()
        if limit < 0:
            raise KVError(CLIENT_INVALID_OPERATION, "limit must be >= 0")
        limit_key = b"\xff\xff" if self.options.read_system_keys else b"\xff"
        if begin > limit_key or end > limit_key:
            raise KVError(KEY_OUTSIDE_LEGAL_RANGE, f"range read past {limit_key!r}")
        if begin >= end:
            return []
        conn = self._ensure_snapshot()
        local = (
            sorted(
                (k for k in self._writes if begin <= k < end),
                reverse=reverse,
            )
            if self._writes
            else []
        )
        cleared = [(b, e) for b, e in self._cleared if b < end and begin < e]
        page = (limit + len(local) + 1) if limit else 256
        out: list[KeyValue] = []
        li = 0
        for key, value in self._db_rows(conn, begin, end, reverse, page):
            # local keys that sort before this row come first
            while li < len(local) and (local[li] > key if reverse else local[li] < key):
                self._emit_local(local[li], out, conn)
                li += 1
                if limit and len(out) >= limit:
                    break
            if limit and len(out) >= limit:
                break
            if li < len(local) and local[li] == key:
                self._emit_local(key, out, conn, stored=value)
                li += 1
            elif not (cleared and any(b <= key < e for b, e in cleared)):
                out.append((key, value))
            if limit and len(out) >= limit:
                break
        else:
            while li < len(local) and not (limit and len(out) >= limit):
                self._emit_local(local[li], out, conn)
                li += 1
        if conflict:
            if limit and len(out) >= limit:
                if reverse:
                    self._reads.append((out[-1][0], end))
                else:
                    self._reads.append((begin, out[-1][0] + b"\x00"))
            else:
                self._reads.append((begin, end))
        return out

    def _emit_local(
        self,
        key: bytes,
        out: list[KeyValue],
        conn: sqlite3.Connection,
        stored: bytes | None = None,
    ) -> None:
        kind, data = self._writes[key]
        if kind == "s":
            out.append((key, data))  # type: ignore[arg-type]
        elif kind == "a":
            if stored is None and not (self._cleared and self._in_cleared(key)):
                row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
                stored = row[0] if row else None
            value = apply_ops(stored, data)  # type: ignore[arg-type]
            if value is not None:
                out.append((key, value))
        elif kind == "v":
            raise KVError(ACCESSED_UNREADABLE, "range read over a versionstamped value")

    # -- writes -----------------------------------------------------------------------------
    def _check_key(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"keys must be bytes, not {type(key).__name__}")
        if len(key) > MAX_KEY:
            raise KVError(KEY_TOO_LARGE, f"key of {len(key)} bytes exceeds {MAX_KEY}")
        if key[:1] == b"\xff":
            raise KVError(KEY_OUTSIDE_LEGAL_RANGE, "keys starting with 0xFF are reserved")

    def _check_value(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"values must be bytes, not {type(value).__name__}")
        if len(value) > MAX_VALUE:
            raise KVError(VALUE_TOO_LARGE, f"value of {len(value)} bytes exceeds {MAX_VALUE}")

    def _valid(self, key: bytes, value: bytes | None = None) -> bool:
        """Check a write's key (and value); an invalid one is deferred (see ``_deferred``)."""
        self._check_state()
        try:
            self._check_key(key)
            if value is not None:
                self._check_value(value)
        except KVError as error:
            self._defer(error)
            return False
        return True

    def set(self, key: bytes, value: bytes) -> None:
        if not self._valid(key, value):
            return
        self._writes[key] = ("s", value)
        self._size += len(key) * 2 + len(value) + 1

    def clear(self, key: bytes) -> None:
        if not self._valid(key):
            return
        self._writes[key] = ("c", None)
        self._size += len(key) * 2 + 1

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._check_state()
        if begin > end:
            self._defer(KVError(INVERTED_RANGE))
            return
        if end > b"\xff" and end != b"\xff":
            end = b"\xff"
        if begin >= end:
            return
        for key in [k for k in self._writes if begin <= k < end]:
            del self._writes[key]
        self._stamped_keys = [(t, v) for t, v in self._stamped_keys if not (begin <= t < end)]
        self._cleared.append((begin, end))
        self._size += (len(begin) + len(end)) * 2

    def _atomic(self, op: str, key: bytes, param: bytes) -> None:
        if not self._valid(key, param):
            return
        entry = self._writes.get(key)
        fn = OPS[op]
        if entry is None:
            if self._cleared and self._in_cleared(key):
                self._writes[key] = ("s", fn(None, param))
            else:
                self._writes[key] = ("a", [(op, param)])
        elif entry[0] == "s":
            self._writes[key] = ("s", fn(entry[1], param))  # type: ignore[arg-type]
        elif entry[0] == "c":
            self._writes[key] = ("s", fn(None, param))
        elif entry[0] == "a":
            entry[1].append((op, param))  # type: ignore[attr-defined]
        else:
            raise KVError(CLIENT_INVALID_OPERATION, "atomic operation on a versionstamped value")
        self._size += len(key) * 2 + len(param) + 1

    def add(self, key: bytes, param: bytes) -> None:
        self._atomic("add", key, param)

    def max(self, key: bytes, param: bytes) -> None:
        self._atomic("max", key, param)

    def min(self, key: bytes, param: bytes) -> None:
        self._atomic("min", key, param)

    def set_versionstamped_key(self, key: bytes, value: bytes) -> None:
        self._check_state()
        if not check_versionstamp_template(key):
            raise KVError(CLIENT_INVALID_OPERATION, "versionstamp offset outside the key")
        if not self._valid(key[:-4], value):
            return
        self._stamped_keys.append((key, value))
        self._size += len(key) * 2 + len(value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._check_state()
        if not check_versionstamp_template(value):
            raise KVError(CLIENT_INVALID_OPERATION, "versionstamp offset outside the value")
        if not self._valid(key, value[:-4]):
            return
        self._writes[key] = ("v", value)
        self._size += len(key) * 2 + len(value)

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
        return self._size + sum(len(begin) + len(end) for begin, end in self._reads)

    def get_read_version(self) -> int:
        self._check()
        self._ensure_snapshot()
        assert self._read_version is not None
        return self._read_version

    # -- life cycle -------------------------------------------------------------------------
    def commit(self) -> None:
        self._check()
        if self._conn is not None and time.monotonic() - self._read_at > LIFETIME:
            self._release()
            raise KVError(TRANSACTION_TOO_OLD)
        if self._size > MAX_TRANSACTION:
            raise KVError(TRANSACTION_TOO_LARGE)
        read_version = self._read_version
        self._release()
        if not (self._writes or self._cleared or self._stamped_keys or self._extra_writes):
            self._committed = True  # read-only: nothing to resolve, like FoundationDB
            if self._stamp is not None:
                self._stamp.error = KVError(
                    NO_COMMIT_VERSION, "no versionstamp: the transaction wrote nothing"
                )
            return
        try:
            stamp = self._db._commit(
                read_version,
                self._reads,
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
        self._retry = RetryState()

    def on_error(self, error: BaseException) -> None:
        self._release()
        self._retry.backoff_or_raise(error, self.options)
        created = self._created  # the timeout option spans the retries, as in FoundationDB
        self._init_state()
        self._created = created
