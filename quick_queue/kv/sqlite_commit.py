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
