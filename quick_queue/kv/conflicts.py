"""Conflict detection for the embedded engine: the part of FoundationDB's resolver it needs.

A committed batch leaves its write-conflict ranges here, stamped with its commit version. A new
commit conflicts when one of its read-conflict ranges overlaps a write range committed after its
read version. History older than the window is dropped; a read version below the dropped part
can no longer be checked and gets ``transaction_too_old``, exactly like FoundationDB's 5 s MVCC
window.
"""

from __future__ import annotations

import bisect
import marshal
from collections import deque
from collections.abc import Iterable

Range = tuple[bytes, bytes]


def is_point(begin: bytes, end: bytes) -> bool:
    return len(end) == len(begin) + 1 and end[-1] == 0 and end.startswith(begin)


def split_reads(reads: Iterable[Range]) -> tuple[set[bytes], list[Range]]:
    """Read-conflict ranges as the point keys among them and the other ranges, split once per
    commit: the resolver then checks a request's points against each batch's written points
    with one ``isdisjoint`` in C, where it called ``is_point`` and looked up each read against
    each batch (a settle reads 2 keys a job). With the write index and the other worker-path
    changes of the same commit (issue 10, callgrind, drain of no-op jobs, startup included):
    1 tenant 1,500 jobs 2040-2041M -> 2028-2033M instructions, 1,000 tenants 3,000 jobs
    4074M -> 3978M; the kv-level dequeue+settle script (/tmp) -5 to -6 % a job."""
    points: set[bytes] = set()
    spans: list[Range] = []
    for begin, end in reads:
        if len(end) == len(begin) + 1 and end[-1] == 0 and end.startswith(begin):  # is_point,
            points.add(begin)  # inlined: a call per read on the commit path
        elif begin < end:
            spans.append((begin, end))
    return points, spans


class WriteSet:
    """The write ranges of one batch: point keys in a set (most writes), the rest as ranges."""

    __slots__ = ("_sorted", "points", "ranges")

    def __init__(self) -> None:
        self.points: set[bytes] = set()
        self.ranges: list[Range] = []
        self._sorted: list[bytes] | None = None

    def add(self, begin: bytes, end: bytes) -> None:
        if is_point(begin, end):
            self.points.add(begin)
        elif begin < end:
            self.ranges.append((begin, end))
        self._sorted = None

    def add_all(self, ranges: Iterable[Range]) -> None:
        for begin, end in ranges:
            self.add(begin, end)

    def intersects(self, reads: Iterable[Range]) -> bool:
        return self.intersects_split(*split_reads(reads))

    def intersects_split(self, points: set[bytes] | frozenset[bytes], spans: list[Range]) -> bool:
        """Whether reads (``split_reads``: point keys, other ranges) overlap these writes."""
        if points and not self.points.isdisjoint(points):
            return True
        ranges = self.ranges
        if ranges:
            for key in points:
                for wb, we in ranges:
                    if wb <= key < we:
                        return True
        if spans:
            ordered = self._sorted
            if ordered is None and self.points:
                ordered = self._sorted = sorted(self.points)
            for begin, end in spans:
                if ordered:
                    i = bisect.bisect_left(ordered, begin)
                    if i < len(ordered) and ordered[i] < end:
                        return True
                for wb, we in ranges:
                    if wb < end and begin < we:
                        return True
        return False

    def __bool__(self) -> bool:
        return bool(self.points) or bool(self.ranges)


class ConflictHistory:
    """Write sets of recent commit versions, oldest first."""

    def __init__(self, floor: int) -> None:
        # Read versions below ``floor`` cannot be checked any more (history dropped or never seen).
        self.floor = floor
        self._entries: deque[tuple[int, float, WriteSet]] = deque()
        # The newest version held (or ``floor``): a read at it or later conflicts with
        # nothing here, told without a call (an enqueue's read version is the latest).
        self.newest = floor

    def append(self, version: int, at: float, writes: WriteSet) -> None:
        self._entries.append((version, at, writes))
        if version > self.newest:
            self.newest = version

    def note_gap(self, version: int) -> None:
        """Versions up to ``version`` are unknown to us (pruned before we saw them)."""
        if version > self.floor:
            self.floor = version
            while self._entries and self._entries[0][0] <= version:
                self._entries.popleft()

    def conflicts(self, points: set[bytes], spans: list[Range], read_version: int) -> bool:
        """Whether reads (``split_reads``: point keys, other ranges) overlap a batch committed
        after ``read_version``."""
        for version, _at, writes in reversed(self._entries):
            if version <= read_version:
                return False
            if writes.intersects_split(points, spans):
                return True
        return False

    def prune(self, older_than: float) -> None:
        entries = self._entries
        while entries and entries[0][1] < older_than:
            version = entries.popleft()[0]
            self.floor = max(self.floor, version)

    def __len__(self) -> int:
        return len(self._entries)


# -- the conflict log's rows (``qq_log.ranges``) ---------------------------------------------------
#: Leading byte of a row in this format: ``marshal`` (version 2) of the pair (point keys, other
#: ranges). The format before it was ``marshal.dumps`` of a list of (begin, end) pairs, each point
#: key k as (k, k + 0x00); its first byte is marshal's list type, ``[`` (0x5B), or 0xDB with
#: marshal's reference flag. Marshal's type codes are printable ASCII (with or without 0x80),
#: never 0x01, so the two cannot be taken for each other. The initial row's blob is empty.
#:
#: Measured (issue 10) on the write sets of real commits: an enqueue_many of 1,000 (2,001 keys)
#: 262,084 -> 128,051 bytes, 3.43M -> 0.58M instructions to encode (callgrind), 8.64M -> 1.65M to
#: decode into a WriteSet (another process's ``_sync_history``); a dequeue batch of 32 jobs (99
#: keys) 13,000 -> 6,364 bytes, 168k -> 35k and 433k -> 88k; one enqueue 346 -> 181 bytes.
#: Marshal version 2 writes no back-references: version 4 looked up every key in a table of
#: objects seen (1.14M instructions to encode the 2,001 keys, against 0.58M).
#: Rejected: zlib (level 1) above 2 kB made rows 6.5x smaller still (20 kB for the enqueue_many:
#: 105 fewer WAL frames) but cost as much CPU as the I/O it saved (+0.5-1.1 ms a compress of
#: 128 kB, against ~0.7 ms of CPU, user and system, for 108 kB more of a FULL-synced WAL commit
#: and its checkpoint), the commit stage of enqueue_many +9 % (median of 10 interleaved runs),
#: and +3.3M instructions a batch for every other process to decompress; front-coding the sorted
#: keys (45 kB) cost 6 ms a batch in Python, a common prefix stripped (100 kB) +0.35 ms.
POINTS_AND_RANGES = 0x01


def encode_writes(writes: WriteSet) -> bytes:
    """A batch's write ranges as a ``qq_log`` row: each point key once, ranges apart."""
    return b"\x01" + marshal.dumps((list(writes.points), writes.ranges), 2)


def decode_writes(blob: bytes) -> WriteSet:
    """A ``qq_log`` row's write ranges, in this format or the one before it (a row written by an
    older quick_queue attached to the same file). Raises ``ValueError`` for anything else."""
    writes = WriteSet()
    if not blob:
        return writes
    kind = blob[0]
    if kind == POINTS_AND_RANGES:
        points, ranges = marshal.loads(memoryview(blob)[1:])
        writes.points.update(points)  # one call in C, not a step per key
        writes.ranges.extend(ranges)
    elif kind == 0x5B or kind == 0xDB:
        writes.add_all(marshal.loads(blob))
    else:
        raise ValueError(f"a conflict log row of unknown format {kind:#04x}")
    return writes
