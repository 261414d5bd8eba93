"""The pieces of the embedded engine's commit that need none of its state: one commit request,
how its writes become write-conflict ranges and rows, and how SQLite's errors are reported."""

from __future__ import annotations

import sqlite3
import threading

from quick_queue.kv.atomic import apply_ops, place_versionstamp, versionstamp_key_range
from quick_queue.kv.conflicts import Range, WriteSet
from quick_queue.kv.errors import (
    FILE_NOT_FOUND,
    IO_ERROR,
    PERMISSION_DENIED,
    KVError,
    StorageError,
)
from quick_queue.kv.sqlite_reads import Entry, points_query


class Request:
    __slots__ = (
        "cleared",
        "done",
        "error",
        "extra_writes",
        "read_keys",
        "read_spans",
        "read_version",
        "relaxed",
        "stamp",
        "stamped",
        "wake",
        "writes",
    )

    def __init__(
        self,
        read_version: int | None,
        read_keys: set[bytes],
        read_spans: list[Range],
        writes: dict[bytes, Entry],
        cleared: list[Range],
        stamped: list[tuple[bytes, bytes]],
        extra_writes: list[Range],
        relaxed: bool = False,
    ) -> None:
        self.read_version = read_version
        # The read conflicts, split as ``conflicts.split_reads`` splits them.
        self.read_keys = read_keys
        self.read_spans = read_spans
        self.writes = writes
        self.cleared = cleared
        self.stamped = stamped
        self.extra_writes = extra_writes
        self.stamp: bytes | None = None
        self.error: KVError | None = None
        self.done = False
        self.relaxed = relaxed
        # A follower's lock, held until a leader releases it (sqlite_group_commit._lead).
        self.wake: threading.Lock | None = None


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
    writes.points.update(request.writes)  # (one call in C: a loop of add cost ~0.2 µs a key)
    if request.cleared:
        writes.add_all(request.cleared)
    if request.extra_writes:
        writes.add_all(request.extra_writes)
    # A versionstamped key is known only at apply time, but later requests of this batch are
    # resolved before that: like FoundationDB, write-conflict every key its stamp could make.
    for template, _value in request.stamped:
        writes.add(*versionstamp_key_range(template))
    writes._sorted = None


#: Statement sizes: a multi-row ``INSERT`` of any count of rows up to ``EXACT``, then 32, 64,
#: ... ``MAX_INSERT`` rows; a ``DELETE ... IN`` of any count of keys up to ``EXACT``, then 32,
#: 64, ... ``MAX_DELETE`` keys; each one cached prepared statement. Rows are written in the
#: fewest such statements (the 64 rows of a 32-job dequeue: one); a longer delete's key list is
#: padded to the next size with its first key again (SQLite deduplicates an IN list) when that
#: adds at most ``MAX_PADDING`` keys, else the largest size that fits is deleted first.
#: Measured (issue 10): a settle of 32 completions made 14 statements, 4 of them 16-key
#: DELETEs; enqueue_many of 1,000 with 64-row INSERTs instead of 16-row ones, -1.5 %
#: instructions a job. A padded key costs ~1.7k instructions, a statement more ~20k
#: (callgrind, 20,000 rows; per delete): 96 keys padded to 128 1.118M, as 64 + 32 1.071M;
#: 40 keys 516k -> 496k as 32 + 8; 17 keys 255k -> 230k as 16 + 1; but 24 keys 311k padded
#: to 32, 332k as 16 + 8.
EXACT = 16
MAX_PADDING = 12
MAX_INSERT = 128
MAX_DELETE = 512
_SIZES = [*range(1, EXACT + 1), *(1 << i for i in range(5, MAX_DELETE.bit_length()))]
_INSERTS = {
    n: "INSERT OR REPLACE INTO kv (k, v) VALUES " + ",".join(["(?,?)"] * n)
    for n in _SIZES if n <= MAX_INSERT
}
_DELETES = {n: "DELETE FROM kv WHERE k IN (" + ",".join(["?"] * n) + ")" for n in _SIZES}

#: Parameters are bound as ``bytearray`` copies up to this many bytes, ``bytes`` beyond. Python
#: 3.11's sqlite3 binds int, float, str and bytearray directly, but runs every ``bytes``
#: parameter through its adapter protocol (a dict lookup on a new tuple, two failed attribute
#: lookups). Measured (issue 10): a 3-row INSERT 16-17 µs with bytes, 11.5-12.4 µs with
#: bytearray copies made for it (200-byte values); the copy outgrows the saving past ~7 kB.
#: SQLite stores and returns the same blob (an empty bytearray is an empty blob, not NULL).
BLOB_COPY = 4096

#: The values an atomic operation needs, kept by the writer between commits (see
#: ``sqlite_group_commit``): key -> stored value (None: absent). At most this many keys.
ValueCache = dict[bytes, bytes | None]
CACHED_VALUES = 1024


def bound(blob: bytes) -> object:
    """``blob`` as a statement parameter (see ``BLOB_COPY``)."""
    return bytearray(blob) if len(blob) <= BLOB_COPY else blob


def write_rows(conn: sqlite3.Cursor, params: list[object], clears: list[bytearray]) -> None:
    """Delete the keys ``clears`` and write the rows ``params`` (key, value, key, value, ...
    as bound, see ``BLOB_COPY``; distinct keys) in multi-row statements (see ``MAX_INSERT``).
    Measured (issue 10): ``executemany`` steps the statement once per row, and every step
    releases and retakes the interpreter lock; with 8 producer threads the group-commit leader
    waited for the lock at each of them (batch wall time 3x its CPU). One statement also costs
    less CPU than 3 steps of ``executemany``. The callers bind each key and value as they
    sort the write buffer into rows, so the rows are walked once (the usual commit writes
    them in one statement)."""
    start, left = 0, len(clears)
    while left:
        if left <= EXACT:
            size = left
        else:
            size = min(1 << (left - 1).bit_length(), MAX_DELETE)  # the next power of two
            if size - left > MAX_PADDING:
                size >>= 1  # (the largest that fits: no padding)
        keys = clears[start : start + size] if start or size < left else clears
        if len(keys) < size:
            keys = keys + [keys[0]] * (size - len(keys))
        conn.execute(_DELETES[size], keys)
        start += size
        left -= min(size, left)
    left = len(params) // 2
    if left <= EXACT:
        if left:
            conn.execute(_INSERTS[left], params)
        return
    start = 0
    while left:
        # all of them if few, else the largest size that fits
        size = left if left <= EXACT else min(1 << (left.bit_length() - 1), MAX_INSERT)
        conn.execute(_INSERTS[size], params[2 * start : 2 * (start + size)])
        start += size
        left -= size


def stored_values(
    conn: sqlite3.Cursor, keys: list[bytes], cache: ValueCache
) -> dict[bytes, bytes | None]:
    """The stored values of ``keys`` (for atomic operations): from ``cache`` where it knows
    them, the rest in one query per 500 keys (then remembered in ``cache``)."""
    found: dict[bytes, bytes | None] = {}
    missing: list[bytes] = []
    for key in keys:
        if key in cache:
            found[key] = cache[key]
        else:
            missing.append(key)
    if not missing:
        return found
    if len(missing) == 1:
        row = conn.execute("SELECT v FROM kv WHERE k = ?", (bytearray(missing[0]),)).fetchone()
        found[missing[0]] = row[0] if row else None
    else:
        for key in missing:
            found[key] = None
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            found.update(
                conn.execute(points_query(len(chunk)), [bytearray(k) for k in chunk]).fetchall()
            )
    return found


def remember(
    cache: ValueCache, entries: dict[bytes, Entry], results: dict[bytes, bytes | None]
) -> None:
    """Keep ``cache`` equal to what the database holds once ``entries`` (a write buffer, or a
    batch's merged one) are written, ``results`` being the values their atomic operations
    left: keys it knows get their new value, and the results are added. Only the keys both
    hold are looked at (found in C): a settle clears ~3 keys a job, the cache holds a few
    counters."""
    if len(cache) + len(results) > CACHED_VALUES:
        cache.clear()
    elif cache:
        for key in cache.keys() & entries.keys():
            kind, data = entries[key]
            if kind == "s":
                cache[key] = data  # type: ignore[assignment]
            elif kind == "c":
                cache[key] = None
            elif kind == "v":  # (an atomic operation's key is among the results)
                del cache[key]
    if results:
        cache.update(results)


def forget_ranges(cache: ValueCache, cleared: list[Range]) -> None:
    for begin, end in cleared:
        for key in [k for k in cache if begin <= k < end]:
            del cache[key]


#: A request's writes as ``bind_rows`` leaves them: the rows of its sets (key, value, ... as
#: bound), the keys of its clears, the keys of its atomic operations, and its versionstamped
#: values (key, template).
BoundRows = tuple[list[object], list[bytearray], list[bytes], list[tuple[bytes, bytes]]]


def bind_rows(request: Request) -> BoundRows:
    """Bind the sets and clears of ``request`` as statement parameters (see ``BLOB_COPY``) and
    set aside what needs the database or the commit version (atomic operations, stamped
    values). Nothing here needs the write lock, so the group commit does it before taking
    its turn: measured (issue 10, eleventh pass), a worker's commit of ~84 jobs held the turn
    for 0.9 ms of CPU, of which binding its ~250 rows was ~0.1 ms, and with two worker
    processes every microsecond held is one the other waits."""
    params: list[object] = []
    clears: list[bytearray] = []
    atomic: list[bytes] = []
    versioned: list[tuple[bytes, bytes]] = []
    add = params.append
    for key, (kind, data) in request.writes.items():
        if kind == "s":
            add(bytearray(key))
            blob: bytes = data  # type: ignore[assignment]
            add(bytearray(blob) if len(blob) <= BLOB_COPY else blob)
        elif kind == "c":
            clears.append(bytearray(key))
        elif kind == "a":
            atomic.append(key)
        else:  # "v": versionstamped value
            versioned.append((key, data))  # type: ignore[arg-type]
    return params, clears, atomic, versioned


def apply_request(
    conn: sqlite3.Cursor, request: Request, stamp: bytes, writes: WriteSet,
    cache: ValueCache, rows: BoundRows | None = None,
) -> None:
    """Write a batch of one request (the usual case) straight from its write buffer, bound by
    ``bind_rows`` (``rows``, when the caller bound them already; see ``write_rows``)."""
    if request.cleared:
        for begin, end in request.cleared:
            conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
        if cache:
            forget_ranges(cache, request.cleared)
    if rows is None:
        params, clears, atomic, versioned = bind_rows(request)
    else:  # (copies: a batch made again binds on them a second time)
        params, clears, atomic, versioned = rows[0].copy(), rows[1].copy(), rows[2], rows[3]
    add = params.append
    for key, template in versioned:
        add(bytearray(key))
        add(bound(place_versionstamp(template, stamp)))
    results: dict[bytes, bytes | None] = {}
    if atomic:
        stored = stored_values(conn, atomic, cache)
        for key in atomic:
            value = apply_ops(stored[key], request.writes[key][1])  # type: ignore[arg-type]
            results[key] = value
            if value is None:
                clears.append(bytearray(key))
            else:
                add(bytearray(key))
                add(bound(value))
    placed: list[bytes] = []
    for template, value in request.stamped:
        key = place_versionstamp(template, stamp)
        placed.append(key)
        add(bytearray(key))
        add(bound(value))
        writes.add(key, key + b"\x00")
    write_rows(conn, params, clears)
    if cache or results:
        remember(cache, request.writes, results)
        for key in placed:  # (written last: what a key set and stamped alike holds)
            cache.pop(key, None)


def apply_batch(
    conn: sqlite3.Cursor, requests: list[Request], writes: WriteSet, cache: ValueCache
) -> None:
    """Write the requests of a batch in commit order (each with its versionstamp set)."""
    if len(requests) == 1:
        request = requests[0]
        assert request.stamp is not None
        apply_request(conn, request, request.stamp, writes, cache)
        return
    merged = BatchWriter(conn, cache)
    for request in requests:
        assert request.stamp is not None
        merged.add(request, request.stamp, writes)
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

    __slots__ = ("_cache", "_conn", "_pending")

    def __init__(self, conn: sqlite3.Cursor, cache: ValueCache) -> None:
        self._conn = conn
        self._cache = cache
        self._pending: dict[bytes, Entry] = {}

    def add(self, request: Request, stamp: bytes, writes: WriteSet) -> None:
        if request.cleared:
            self.flush()
            for begin, end in request.cleared:
                self._conn.execute("DELETE FROM kv WHERE k >= ? AND k < ?", (begin, end))
            if self._cache:
                forget_ranges(self._cache, request.cleared)
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
        cache = self._cache
        atomic = [key for key, (kind, _data) in pending.items() if kind == "a"]
        stored = stored_values(self._conn, atomic, cache) if atomic else {}
        params: list[object] = []
        clears: list[bytearray] = []
        results: dict[bytes, bytes | None] = {}
        for key, (kind, data) in pending.items():
            if kind == "a":
                data = results[key] = apply_ops(stored[key], data)  # type: ignore[arg-type]
                kind = "s" if data is not None else "c"
            if kind == "s":
                params.append(bytearray(key))
                params.append(bound(data))  # type: ignore[arg-type]
            else:
                clears.append(bytearray(key))
        write_rows(self._conn, params, clears)
        if cache or results:
            remember(cache, pending, results)
