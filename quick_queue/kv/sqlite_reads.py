"""The reads of the embedded engine's transactions: point, batched and range reads at the
transaction's SQLite snapshot, merged with its own buffered writes (read-your-writes), adding
read-conflict ranges as FoundationDB does (none for what the write buffer answers, none for
snapshot reads; a limited range read conflicts only up to its last key).

``SQLiteReads`` is the base of ``sqlite_transaction.SQLiteTransaction``, which keeps the state
these methods read (declared here) and the writes.
"""

from __future__ import annotations

import functools
import sqlite3
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING

from quick_queue.kv.api import (
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    range_read_conflict,
)
from quick_queue.kv.atomic import apply_ops
from quick_queue.kv.conflicts import Range
from quick_queue.kv.errors import CLIENT_INVALID_OPERATION, KEY_OUTSIDE_LEGAL_RANGE, KVError

if TYPE_CHECKING:
    from quick_queue.kv.sqlite_engine import SQLiteDatabase

ACCESSED_UNREADABLE = 1036

# A write buffer entry: ("s", value) set, ("c", None) cleared, ("a", [(op, param)]) pending atomic
# operations on whatever the database holds, ("v", template) a versionstamped value.
Entry = tuple[str, object]

_PAGE = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?"
_PAGE_DESC = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT ?"


@functools.cache  # (built once a count: get_many runs it for every batch of keys)
def points_query(count: int) -> str:
    """The statement reading ``count`` keys' rows: the keys as a table of constants joined to
    the store's, each one index search in the order given. Measured (issue 10, callgrind, 16
    and 32 keys of 20,000 rows): 12.2k and 11.0k instructions a key with ``k IN (...)``, which
    first builds and sorts a temporary index of the list, against 8.9k and 8.5k this way."""
    return (
        "WITH wanted(k) AS (VALUES " + ",".join(["(?)"] * count)
        + ") SELECT kv.k, kv.v FROM wanted CROSS JOIN kv ON kv.k = wanted.k"
    )


class SnapshotView(ReadView):
    """``tr.snapshot``: the same reads, adding no read conflicts.

    It holds its transaction through a weak proxy: a strong reference would make every
    transaction a reference cycle that only the cyclic garbage collector frees (measured,
    issue 10: 14 objects of garbage per transaction, and the collector's passes ~90k
    instructions per enqueue-shaped transaction, 5 % of its CPU)."""

    __slots__ = ("_tr",)

    def __init__(self, tr: SQLiteReads) -> None:
        self._tr: SQLiteReads = weakref.proxy(tr)

    def get(self, key: bytes) -> bytes | None:
        return self._tr._get(key, conflict=False)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self._tr._get_range(begin, end, limit, reverse, conflict=False)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._tr._get_many(keys, conflict=False)

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        return self._tr._get_ranges(ranges, conflict=False)


class SQLiteReads(Transaction):
    """The read half of ``SQLiteTransaction`` (see the module docstring)."""

    _db: SQLiteDatabase
    _writes: dict[bytes, Entry]
    _index: list[bytes]  # the keys of _writes, sorted (see _written_in)
    _cleared: list[Range]
    _reads: list[Range]
    _read_keys: set[bytes]
    _conn: sqlite3.Cursor | None
    options: TransactionOptions

    def _check(self) -> None:
        raise NotImplementedError

    def _ensure_snapshot(self) -> sqlite3.Cursor:
        raise NotImplementedError

    def _first_read(self, key: bytes | None) -> bytes | None:
        raise NotImplementedError

    def _serve(self, key: bytes, version: int, value: bytes | None, *, proven: bool) -> bool:
        raise NotImplementedError

    def _check_read_key(self, key: bytes) -> None:
        # FoundationDB refuses reads at and past \xff (its system keys) unless asked.
        limit = b"\xff\xff" if self.options.read_system_keys else b"\xff"
        if key >= limit:
            raise KVError(KEY_OUTSIDE_LEGAL_RANGE, f"read of {key[:16]!r}... at or past {limit!r}")

    def get(self, key: bytes) -> bytes | None:
        return self._get(key, conflict=True)

    def get_before_write(self, key: bytes) -> bytes | None:
        # The read cache's value without the proof that it is the latest (``PRAGMA
        # data_version``: a statement and a read lock of the WAL index, four fcntl calls):
        # the commit's conflict check proves it instead (see ``sqlite_read_cache``).
        return self._get(key, conflict=True, before_write=True)

    def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 0, reverse: bool = False
    ) -> list[KeyValue]:
        return self._get_range(begin, end, limit, reverse, conflict=True)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._get_many(keys, conflict=True)

    def get_ranges(self, ranges: list[tuple[bytes, bytes, int]]) -> list[list[KeyValue]]:
        return self._get_ranges(ranges, conflict=True)

    def _get_ranges(
        self, ranges: list[tuple[bytes, bytes, int]], *, conflict: bool
    ) -> list[list[KeyValue]]:
        try:
            return self._get_ranges_inner(ranges, conflict)
        except sqlite3.Error as error:
            raise self._db._reading_failed(error) from error

    def _get_ranges_inner(
        self, ranges: list[tuple[bytes, bytes, int]], conflict: bool
    ) -> list[list[KeyValue]]:
        """``get_range`` of each range, in one pass: a limited range this transaction wrote
        nothing in is one statement straight into its list (``_get_range_inner``'s fast
        path), without a call and its checks a range; the others as ``get_range`` reads them.
        The read conflicts are ``get_range``'s. Measured (issue 10): one statement of the
        four ranges (a ``UNION ALL`` of their limited pages, tagged) cost more than the four
        statements, in SQLite (25.9 against 24.8 µs in a loop of 3,000) and in Python (the
        rows sorted back to their ranges one by one)."""
        self._check()
        limit_key = b"\xff\xff" if self.options.read_system_keys else b"\xff"
        conn = self._ensure_snapshot()
        writes, cleared, reads = self._writes, self._cleared, self._reads
        execute = conn.execute
        out: list[list[KeyValue]] = []
        for begin, end, limit in ranges:
            if limit <= 0 or begin > limit_key or end > limit_key or begin >= end or (
                (writes and self._written_in(begin, end, False))
                or (cleared and any(b < end and begin < e for b, e in cleared))
            ):  # (unlimited, refused, empty, or with writes of this transaction to merge)
                out.append(self._get_range_inner(begin, end, limit, False, conflict))
                continue
            # bytearray: see sqlite_commit.BLOB_COPY
            rows = execute(_PAGE, (bytearray(begin), bytearray(end), limit)).fetchall()
            out.append(rows)
            if conflict:
                reads.append(range_read_conflict(begin, end, rows, limit))
        return out

    def _get_many(self, keys: list[bytes], *, conflict: bool) -> list[bytes | None]:
        if len(keys) < 3:
            return [self._get(key, conflict=conflict) for key in keys]
        self._check()
        limit = b"\xff\xff" if self.options.read_system_keys else b"\xff"
        if max(keys) >= limit:  # (one call in C instead of a check per key)
            for key in keys:
                self._check_read_key(key)
        writes = self._writes
        if writes or self._cleared:
            # Keys the write buffer answers completely are served from it; the rest in one
            # query.
            wanted = [
                key for key in keys
                if ((entry := writes.get(key)) is None and not self._in_cleared(key))
                or (entry is not None and entry[0] == "a")
            ]
        else:  # nothing written yet (a dequeue reads its records before it writes its leases)
            wanted = list(keys)
        stored: dict[bytes, bytes] = {}
        if wanted:
            conn = self._ensure_snapshot()
            # In key order SQLite walks its index once, page after page (measured: 32 keys
            # in 87 µs instead of 124 in arrival order, e.g. a dequeue's ready order).
            wanted.sort()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                stored.update(
                    conn.execute(  # bytearray: see sqlite_commit.BLOB_COPY
                        points_query(len(chunk)), [bytearray(k) for k in chunk]
                    ).fetchall()
                )
            if conflict:
                self._read_keys.update(wanted)
        if not writes:
            return [stored.get(key) for key in keys]
        out: list[bytes | None] = []
        for key in keys:
            entry = writes.get(key)
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

    def _get(self, key: bytes, *, conflict: bool, before_write: bool = False) -> bytes | None:
        try:
            return self._get_inner(key, conflict, before_write)
        except sqlite3.Error as error:  # a corrupt page shows up on the read that meets it
            raise self._db._reading_failed(error) from error

    def _get_inner(self, key: bytes, conflict: bool, before_write: bool = False) -> bytes | None:
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
        value: bytes | None
        if self._conn is None:
            # No snapshot yet: the read cache may answer a regular read without one
            # (sqlite_read_cache).
            hit = self._db._cached_read(key, proven=not before_write) if conflict else None
            if hit is not None and self._serve(key, *hit, proven=not before_write):
                value = hit[1]
            else:
                value = self._first_read(key)
        else:
            row = self._ensure_snapshot().execute(
                "SELECT v FROM kv WHERE k = ?", (bytearray(key),)  # see sqlite_commit.BLOB_COPY
            ).fetchone()
            value = row[0] if row is not None else None
        if conflict:
            self._read_keys.add(key)
        if entry is not None:  # pending atomic operations over the stored value
            return apply_ops(value, entry[1])  # type: ignore[arg-type]
        return value

    def _db_rows(
        self, conn: sqlite3.Cursor, begin: bytes, end: bytes, reverse: bool, page: int
    ) -> Iterator[KeyValue]:
        sql = _PAGE_DESC if reverse else _PAGE
        lo, hi = begin, end
        while True:
            rows = conn.execute(sql, (bytearray(lo), bytearray(hi), page)).fetchall()
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
        local = self._written_in(begin, end, reverse) if self._writes else []
        cleared = [(b, e) for b, e in self._cleared if b < end and begin < e]
        if local or cleared:
            out = self._merged(conn, begin, end, limit, reverse, local, cleared)
        elif limit:
            # Nothing of this transaction's in the range: the rows are the answer, in one query
            # and without a Python step per row. Measured (issue 10, callgrind): a drain of
            # 3,000 jobs over 1,000 tenants range-reads ~26k rows (the due index, 300 at a
            # time): 3978M -> 3599-3607M instructions (3872-4074M before 29086bc: that run
            # varies with the zones per visit); 1 tenant, 1,500 jobs: 2028-2033M -> 2027M.
            sql = _PAGE_DESC if reverse else _PAGE
            out = conn.execute(sql, (bytearray(begin), bytearray(end), limit)).fetchall()
        else:
            out = list(self._db_rows(conn, begin, end, reverse, 256))
        if conflict:
            if reverse and limit and len(out) >= limit:
                self._reads.append((out[-1][0], end))
            else:
                self._reads.append(range_read_conflict(begin, end, out, limit))
        return out

    def _merged(
        self, conn: sqlite3.Cursor, begin: bytes, end: bytes, limit: int, reverse: bool,
        local: list[bytes], cleared: list[Range],
    ) -> list[KeyValue]:
        """The stored rows of [begin, end) merged with this transaction's writes there."""
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
        return out

    def _written_in(self, begin: bytes, end: bytes, reverse: bool) -> list[bytes]:
        """The written keys in [begin, end), in order (``reverse``: descending), from
        ``_index``: the write buffer's keys sorted, first brought up to date with the keys
        written since its last use. Keys only join the buffer (at the end of its insertion
        order) except through ``clear_range``, which empties the index, so the keys past its
        length are the new ones.

        Measured (issue 10): a worker visiting several zones in one transaction range-reads
        each zone after writing the leases of the zones before it; filtering the whole buffer
        in Python on each read went through ~93 written keys a job in a drain of 3,000 jobs
        over 1,000 tenants (none at 1 tenant). Bisecting the index is O(log n) a read, and
        only the new keys are sorted (figures with the rest: ``conflicts.split_reads``)."""
        writes = self._writes
        index = self._index
        known = len(index)
        if known != len(writes):
            new = list(islice(writes, known, None))
            new.sort()
            index += new
            if known and new[0] < index[known - 1]:
                index.sort()  # two sorted runs: merged by one pass of the sort
        lo = bisect_left(index, begin)
        keys = index[lo : bisect_left(index, end, lo)]
        if reverse:
            keys.reverse()
        return keys

    def _emit_local(
        self,
        key: bytes,
        out: list[KeyValue],
        conn: sqlite3.Cursor,
        stored: bytes | None = None,
    ) -> None:
        kind, data = self._writes[key]
        if kind == "s":
            out.append((key, data))  # type: ignore[arg-type]
        elif kind == "a":
            if stored is None and not (self._cleared and self._in_cleared(key)):
                row = conn.execute("SELECT v FROM kv WHERE k = ?", (bytearray(key),)).fetchone()
                stored = row[0] if row else None
            value = apply_ops(stored, data)  # type: ignore[arg-type]
            if value is not None:
                out.append((key, value))
        elif kind == "v":
            raise KVError(ACCESSED_UNREADABLE, "range read over a versionstamped value")

    # -- writes -----------------------------------------------------------------------------
