"""The writes of the embedded engine's transactions: buffered in memory (``_writes``, one entry
per key, see ``sqlite_reads.Entry``; range clears in ``_cleared``), checked as FoundationDB
checks them, an invalid one reported by the next read and by the commit.

``SQLiteWrites`` is the base of ``sqlite_transaction.SQLiteTransaction``, which keeps the state
these methods write (declared here) and the life cycle.
"""

from __future__ import annotations

from bisect import bisect_left

from quick_queue.kv.atomic import OPS, check_versionstamp_template
from quick_queue.kv.conflicts import Range
from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    INVERTED_RANGE,
    KEY_OUTSIDE_LEGAL_RANGE,
    KEY_TOO_LARGE,
    VALUE_TOO_LARGE,
    KVError,
)
from quick_queue.kv.sqlite_reads import SQLiteReads

MAX_KEY = 10_000
MAX_VALUE = 100_000


class SQLiteWrites(SQLiteReads):
    """The write half of ``SQLiteTransaction`` (see the module docstring)."""

    _stamped_keys: list[tuple[bytes, bytes]]
    _extra_writes: list[Range]
    _size: int
    _committed: bool

    def _check_state(self) -> None:
        raise NotImplementedError

    def _defer(self, error: KVError) -> None:
        raise NotImplementedError

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
        # The common case in one expression: plain bytes in the legal range, a transaction
        # neither committed nor under a timeout (``_valid`` decides the rest, with its
        # errors). Inlined in each write method: the calls cost about a third of one.
        if not (
            type(value) is bytes and type(key) is bytes and len(value) <= MAX_VALUE
            and len(key) <= MAX_KEY and key[:1] != b"\xff"
            and not self._committed and not self.options.timeout_ms
        ) and not self._valid(key, value):
            return
        self._writes[key] = ("s", value)
        self._size += len(key) * 2 + len(value) + 1

    def set_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """The same as ``set`` for each pair, with the checks of the common case inlined
        (enqueue_many sets two keys a job; measured by E, issue 10: 0.2-0.35 µs a pair less)."""
        if self._committed or self.options.timeout_ms:
            for key, value in pairs:
                self.set(key, value)
            return
        writes = self._writes
        size = 0
        for key, value in pairs:
            if (
                type(key) is bytes and type(value) is bytes and len(key) <= MAX_KEY
                and len(value) <= MAX_VALUE and key[:1] != b"\xff"
            ):
                writes[key] = ("s", value)
                size += len(key) * 2 + len(value) + 1
            else:
                self.set(key, value)  # its checks, and the error deferred as set defers it
        self._size += size

    def clear(self, key: bytes) -> None:
        # (checks inlined as in ``set``: a worker clears 3 keys a job)
        if not (
            type(key) is bytes and len(key) <= MAX_KEY and key[:1] != b"\xff"
            and not self._committed and not self.options.timeout_ms
        ) and not self._valid(key):
            return
        self._writes[key] = ("c", None)
        self._size += len(key) * 2 + 1

    def clear_many(self, keys: list[bytes]) -> None:
        """The same as ``clear`` for each key, with the checks of the common case made once
        per call where they do not depend on the key (a settle clears two keys a job)."""
        if self._committed or self.options.timeout_ms:
            for key in keys:
                self.clear(key)
            return
        writes = self._writes
        size = 0
        for key in keys:
            if type(key) is bytes and len(key) <= MAX_KEY and key[:1] != b"\xff":
                writes[key] = ("c", None)
                size += len(key) * 2 + 1
            else:
                self.clear(key)  # its checks, and the error deferred as clear defers it
        self._size += size

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._check_state()
        if begin > end:
            self._defer(KVError(INVERTED_RANGE))
            return
        if begin > b"\xff" or end > b"\xff":  # as FoundationDB: past \xff is not ours to clear
            self._defer(KVError(KEY_OUTSIDE_LEGAL_RANGE, "clear_range past b'\\xff'"))
            return
        if begin >= end:
            return
        if self._writes:
            # The written keys in the range, found by bisecting the sorted index of the write
            # buffer (brought up to date first) and dropped from both, so the index stays
            # current. Before, a scan of the whole buffer per call and an emptied index: a
            # visit clears its ready entries with one range clear (core.dequeue), and a worker
            # visiting several zones in one transaction then sorted its whole buffer again at
            # the next zone's range read, and scanned it again at the next clear.
            doomed = self._written_in(begin, end, False)
            if doomed:
                writes = self._writes
                for key in doomed:
                    del writes[key]
                index = self._index
                lo = bisect_left(index, begin)
                del index[lo : lo + len(doomed)]
        self._stamped_keys = [(t, v) for t, v in self._stamped_keys if not (begin <= t < end)]
        self._cleared.append((begin, end))
        self._size += (len(begin) + len(end)) * 2

    def _atomic(self, op: str, key: bytes, param: bytes) -> None:
        # The common case's checks inlined (as in ``set``): every enqueue and settle adds to
        # counters; ``_valid`` makes four calls.
        if not (
            type(param) is bytes and type(key) is bytes and len(param) <= MAX_VALUE
            and len(key) <= MAX_KEY and key[:1] != b"\xff"
            and not self._committed and not self.options.timeout_ms
        ) and not self._valid(key, param):
            return
        entry = self._writes.get(key)
        if entry is None:
            if self._cleared and self._in_cleared(key):
                self._writes[key] = ("s", OPS[op](None, param))
            else:
                self._writes[key] = ("a", [(op, param)])
            self._size += len(key) * 2 + len(param) + 1
            return
        fn = OPS[op]
        if entry[0] == "s":
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
            self._defer(KVError(CLIENT_INVALID_OPERATION, "versionstamp offset outside the key"))
            return
        if not self._valid(key[:-4], value):
            return
        self._stamped_keys.append((key, value))
        self._size += len(key) * 2 + len(value)

    def set_versionstamped_value(self, key: bytes, value: bytes) -> None:
        self._check_state()
        if not check_versionstamp_template(value):
            self._defer(
                KVError(CLIENT_INVALID_OPERATION, "versionstamp offset outside the value")
            )
            return
        if not self._valid(key, value[:-4]):
            return
        self._writes[key] = ("v", value)
        self._size += len(key) * 2 + len(value)
