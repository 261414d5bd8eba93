"""Conflict detection for the embedded engine: the part of FoundationDB's resolver it needs.

A committed batch leaves its write-conflict ranges here, stamped with its commit version. A new
commit conflicts when one of its read-conflict ranges overlaps a write range committed after its
read version. History older than the window is dropped; a read version below the dropped part
can no longer be checked and gets ``transaction_too_old``, exactly like FoundationDB's 5 s MVCC
window.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable

Range = tuple[bytes, bytes]


def is_point(begin: bytes, end: bytes) -> bool:
    return len(end) == len(begin) + 1 and end[-1] == 0 and end.startswith(begin)


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
        points = self.points
        ranges = self.ranges
        for begin, end in reads:
            if is_point(begin, end):
                if begin in points:
                    return True
            elif points:
                ordered = self._sorted
                if ordered is None:
                    ordered = self._sorted = sorted(points)
                i = bisect.bisect_left(ordered, begin)
                if i < len(ordered) and ordered[i] < end:
                    return True
            for wb, we in ranges:
                if wb < end and begin < we:
                    return True
        return False

    def as_list(self) -> list[Range]:
        out = [(k, k + b"\x00") for k in self.points]
        out.extend(self.ranges)
        return out

    def __bool__(self) -> bool:
        return bool(self.points) or bool(self.ranges)


class ConflictHistory:
    """Write sets of recent commit versions, oldest first."""

    def __init__(self, floor: int) -> None:
        # Read versions below ``floor`` cannot be checked any more (history dropped or never seen).
        self.floor = floor
        self._entries: deque[tuple[int, float, WriteSet]] = deque()

    def append(self, version: int, at: float, writes: WriteSet) -> None:
        self._entries.append((version, at, writes))

    def note_gap(self, version: int) -> None:
        """Versions up to ``version`` are unknown to us (pruned before we saw them)."""
        if version > self.floor:
            self.floor = version
            while self._entries and self._entries[0][0] <= version:
                self._entries.popleft()

    def conflicts(self, reads: list[Range], read_version: int) -> bool:
        if not reads:
            return False
        for version, _at, writes in reversed(self._entries):
            if version <= read_version:
                return False
            if writes.intersects(reads):
                return True
        return False

    def prune(self, older_than: float) -> None:
        entries = self._entries
        while entries and entries[0][1] < older_than:
            version = entries.popleft()[0]
            self.floor = max(self.floor, version)

    def __len__(self) -> int:
        return len(self._entries)
