"""The pieces of the embedded engine's commit that need none of its state: one commit request,
how its writes become write-conflict ranges and rows, and how SQLite's errors are reported."""

from __future__ import annotations

import sqlite3

from quick_queue.kv.atomic import apply_ops, place_versionstamp, versionstamp_key_range
from quick_queue.kv.conflicts import Range, WriteSet
from quick_queue.kv.errors import (
    FILE_NOT_FOUND,
    IO_ERROR,
    PERMISSION_DENIED,
    KVError,
    StorageError,
)
from quick_queue.kv.sqlite_reads import Entry


class Request:
    __slots__ = (
        "cleared",
        "done",
        "error",
        "extra_writes",
        "read_version",
        "reads",
        "relaxed",
        "stamp",
        "stamped",
        "writes",
    )

    def __init__(
        self,
        read_version: int | None,
        reads: list[Range],
        writes: dict[bytes, Entry],
        cleared: list[Range],
        stamped: list[tuple[bytes, bytes]],
        extra_writes: list[Range],
    ) -> None:
        self.read_version = read_version
        self.reads = reads
        self.writes = writes
        self.cleared = cleared
        self.stamped = stamped
        self.extra_writes = extra_writes
        self.stamp: bytes | None = None
        self.error: KVError | None = None
        self.done = False
        self.relaxed = False


def storage_error(path: str, error: sqlite3.Error, doing: str) -> StorageError:
    text = str(error)
    lowered = text.lower()
    transient = False
    if "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        code, what = PERMISSION_DENIED, "is read-only or not writable"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        code, what = IO_ERROR, "is not a quick_queue database or is corrupt"
    elif "full" in lowered:
        code, what = IO_ERROR, "cannot grow: the disk is full"
        transient = True  # space may come back; the file is intact meanwhile
    elif "unable to open" in lowered:
        code, what = FILE_NOT_FOUND, "cannot be opened (missing folder or no permission)"
    else:
        code, what = IO_ERROR, "failed"
        transient = "disk i/o" in lowered or "busy" in lowered or "locked" in lowered
    return StorageError(
        code, f"{path} {what} while {doing}: {text}", path=path, transient=transient
    )


def add_write_ranges(writes: WriteSet, request: Request) -> None:
    for key in request.writes:
        writes.points.add(key)
    writes.add_all(request.cleared)
    writes.add_all(request.extra_writes)
    # A versionstamped key is known only at apply time, but later requests of this batch are
    # resolved before that: like FoundationDB, write-conflict every key its stamp could make.
    for template, _value in request.stamped:
        writes.add(*versionstamp_key_range(template))
    writes._sorted = None


def apply_request(
    conn: sqlite3.Connection, request: Request, stamp: bytes, writes: WriteSet
) -> None:
    """Write a batch of one request (the usual case) straight from its write buffer."""
    for begin, end in request.cleared:
        conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
    sets: list[tuple[bytes, bytes]] = []
    clears: list[tuple[bytes]] = []
    for key, (kind, data) in request.writes.items():
        if kind == "s":
            sets.append((key, data))  # type: ignore[arg-type]
        elif kind == "c":
            clears.append((key,))
        elif kind == "a":
            row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            value = apply_ops(row[0] if row else None, data)  # type: ignore[arg-type]
            if value is None:
                clears.append((key,))
            else:
                sets.append((key, value))
        else:  # "v": versionstamped value
            sets.append((key, place_versionstamp(data, stamp)))  # type: ignore[arg-type]
    for template, value in request.stamped:
        key = place_versionstamp(template, stamp)
        sets.append((key, value))
        writes.add(key, key + b"\x00")
    if clears:
        conn.executemany("DELETE FROM kv WHERE k = ?", clears)
    if sets:
        conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", sets)


def apply_batch(
    conn: sqlite3.Connection, requests: list[tuple[Request, bytes]], writes: WriteSet
) -> None:
    """Write the requests of a batch in commit order (each with its versionstamp)."""
    if len(requests) == 1:
        apply_request(conn, *requests[0], writes)
        return
    merged = BatchWriter(conn)
    for request, stamp in requests:
        merged.add(request, stamp, writes)
    merged.flush()


class BatchWriter:
    """The rows of a batch of several requests, applied with one prepared ``executemany`` per
    kind (sets, clears) for the whole batch instead of statements per request, and the stored
    values its atomic operations need read in one query.

    Measured (issue 10, valgrind instruction counts): for a batch of one request this costs
    about 10k instructions more than ``apply_request``, so it serves batches of several only,
    where it saves statements per extra request. Folding an atomic operation into
    ``INSERT ... ON CONFLICT DO UPDATE`` through a registered Python function cost 22 µs of CPU
    for one counter against 7 µs for the read and a row in the sets' ``executemany``; SQLite
    3.40 has no ``unhex()`` to do FoundationDB's little-endian add in SQL alone.

    Requests are merged in commit order into one final entry per key; only a range clear needs
    the database up to date first (it deletes stored rows), so it flushes what is pending
    before it runs."""

    __slots__ = ("_conn", "_pending")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._pending: dict[bytes, Entry] = {}

    def add(self, request: Request, stamp: bytes, writes: WriteSet) -> None:
        if request.cleared:
            self.flush()
            for begin, end in request.cleared:
                self._conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
        pending = self._pending
        for key, (kind, data) in request.writes.items():
            if kind == "a":
                earlier = pending.get(key)
                if earlier is None:
                    pending[key] = ("a", data)
                elif earlier[0] == "a":  # a new list: the request's own stays as it was
                    pending[key] = ("a", earlier[1] + data)  # type: ignore[operator]
                else:  # set or cleared earlier in this batch: the value is known here
                    value = apply_ops(earlier[1], data)  # type: ignore[arg-type]
                    pending[key] = ("s", value) if value is not None else ("c", None)
            elif kind == "v":
                pending[key] = ("s", place_versionstamp(data, stamp))  # type: ignore[arg-type]
            else:
                pending[key] = (kind, data)
        for template, value in request.stamped:
            key = place_versionstamp(template, stamp)
            pending[key] = ("s", value)
            writes.add(key, key + b"\x00")

    def flush(self) -> None:
        """Write what is pending."""
        pending, self._pending = self._pending, {}
        atomic = [key for key, (kind, _data) in pending.items() if kind == "a"]
        stored = self._stored(atomic) if atomic else {}
        sets: list[tuple[bytes, object]] = []
        clears: list[tuple[bytes]] = []
        for key, (kind, data) in pending.items():
            if kind == "a":
                value = apply_ops(stored.get(key), data)  # type: ignore[arg-type]
                kind, data = ("s", value) if value is not None else ("c", None)
            if kind == "s":
                sets.append((key, data))
            else:
                clears.append((key,))
        if clears:
            self._conn.executemany("DELETE FROM kv WHERE k = ?", clears)
        if sets:
            self._conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", sets)

    def _stored(self, keys: list[bytes]) -> dict[bytes, bytes]:
        stored: dict[bytes, bytes] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            stored.update(
                self._conn.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", chunk).fetchall()
            )
        return stored
