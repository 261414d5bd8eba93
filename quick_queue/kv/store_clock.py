"""The store's time on FoundationDB, derived from the read version.

Every worker must compare leases against one time, whatever its host's clock says. FoundationDB
hands every transaction a read version that advances about 1,000,000 per second on the
cluster's side, so it is that time, once anchored to the wall clock: the first process writes
``(read version, its wall time)`` to ``ANCHOR_KEY``, and every process then computes::

    store time = anchor wall time + (read version - anchor version) / 1e6

so hosts with skewed or stepped clocks agree.

A read version is the last *committed* version, and an idle cluster commits only every couple
of seconds (its proxies' empty batches), so the versions, and a time read from them, stand
still for up to ~2 s and then jump. Each reading is therefore only a lower bound of the store's
time: a process keeps the best (largest) ``time - monotonic`` offset of its readings of the last
``OFFSET_WINDOW`` to ``2 * OFFSET_WINDOW`` seconds and carries it on by its monotonic clock, so
its time runs smoothly between commits and stays within a scan or so of a fresh reading (a
schedule's tick is then not seen seconds late). Forgetting older readings bounds what a
monotonic clock running fast could add. A process with no recent reading (its first, or its
first after ``2 * OFFSET_WINDOW`` s without one) takes a fresh one instead: it commits a blind
write of ``TICK_KEY`` (no read, so it never conflicts) and reads the time from that commit's
version, which is the cluster's now. Else a worker started on an idle cluster would run up to
~2 s behind the others, and its leases would look expired to them that much early.

The anchor is written again (transactionally,
so concurrent writers settle on one) when:

* the read version is older than the anchor's: a new or restored cluster;
* the versions jumped ahead of the time that passed here (a recovery advances them by up to
  about 100 s of versions at once): the new anchor continues from this process's previous
  reading plus the monotonic time since, so a recovery never makes every lease expire.

It is written over any ``Database`` so it can be exercised on the embedded engine with a
stand-in version source; ``FDBDatabase.store_time`` uses it with the real read version.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable

from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import TRANSACTION_TIMED_OUT, KVError

#: ``fdb.tuple.pack(("qq.kv", "clock"))``: outside every queue's ``("qq", name)`` subspace.
ANCHOR_KEY = b"\x02qq.kv\x00\x02clock\x00"
#: ``fdb.tuple.pack(("qq.kv", "tick"))``: written (blindly, empty) by a fresh reading's commit.
TICK_KEY = b"\x02qq.kv\x00\x02tick\x00"
VERSIONS_PER_SECOND = 1_000_000
#: How far versions may run ahead of the monotonic clock before it counts as a jump.
JUMP_SLACK = 2.0
#: A reading younger than this (seconds, monotonic) is extended locally instead of asking the
#: cluster again: callers may ask for the time often, and each reading costs a round trip.
REUSE_SECONDS = 0.05
#: Seconds after a reading timed out (the cluster unreachable) during which the time is carried
#: on from the last reading without asking the cluster again.
OUTAGE_QUIET = 1.0
#: Seconds a reading's offset is carried on at least (and at most twice that); see above.
OFFSET_WINDOW = 5.0
_ANCHOR = struct.Struct(">qd")


class VersionClock:
    """``now()``: the store's time from read versions (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        read_version: Callable[[Transaction], int] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        writable: bool = True,
        reuse_seconds: float = REUSE_SECONDS,
        commit_version: Callable[[Transaction], int] | None = None,
    ) -> None:
        self._db = db
        self._writable = writable  # False: a read-only database computes but never anchors
        self._reuse = reuse_seconds
        self._read_version = read_version or (lambda tr: tr.get_read_version())
        # A fresh reading's version (module docstring); a stand-in version source without
        # one (tests) is always fresh.
        self._commit_version = commit_version or (None if read_version else _committed)
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: (read version, store time, monotonic time) of this process's last reading.
        self._last: tuple[int, float, float] | None = None
        #: Until then (monotonic), the cluster timed out lately: carry the last reading on.
        self._quiet_until = 0.0
        #: (monotonic start of this window, best offset in it, best offset in the window
        #: before): the offsets are ``store time - monotonic`` of readings (module docstring).
        self._offsets: tuple[float, float, float] | None = None

    def now(self) -> float:
        with self._lock:
            last = self._last
            quiet = self._quiet_until
        if last is not None and (0 <= self._monotonic() - last[2] < self._reuse
                                 or self._monotonic() < quiet):
            return last[1] + (self._monotonic() - last[2])
        try:
            fresh = self._fresh_version()
        except KVError as error:
            if last is not None and error.code == TRANSACTION_TIMED_OUT:
                return self._unanswered(last)
            fresh = None  # the read version serves, its errors handled below
        tr = self._db.create_transaction()
        while True:
            try:
                version, moment = self._reading(tr, fresh)
                break
            except KVError as error:
                try:
                    tr.on_error(error)
                except KVError as final:
                    if last is None or final.code != TRANSACTION_TIMED_OUT:
                        raise
                    return self._unanswered(last)
        with self._lock:
            last = self._last
            mono = self._monotonic()
            moment = max(moment, self._carried(moment, mono))
            if last is not None and version >= last[0]:
                moment = max(moment, last[1])  # never backwards within a process
            self._last = (version, moment, mono)
        return moment

    def _unanswered(self, last: tuple[int, float, float]) -> float:
        """The cluster does not answer: the last reading goes on by the monotonic clock (as
        between readings), and for OUTAGE_QUIET s nobody waits out another timeout for the
        time (a worker thread would, after each job)."""
        with self._lock:
            self._quiet_until = self._monotonic() + OUTAGE_QUIET
        return last[1] + max(0.0, self._monotonic() - last[2])

    def _carried(self, moment: float, mono: float) -> float:
        """The best recent offset carried on to ``mono`` (``moment``'s own offset joins the
        window first). Called with the lock held."""
        offset = moment - mono
        window = self._offsets
        if window is None or mono - window[0] >= 2 * OFFSET_WINDOW or mono < window[0]:
            window = (mono, offset, offset)  # nothing recent to carry on
        elif mono - window[0] >= OFFSET_WINDOW:
            window = (mono, offset, window[1])  # a new window; the last one's best still counts
        else:
            window = (window[0], max(window[1], offset), window[2])
        self._offsets = window
        return mono + max(window[1], window[2])

    def _fresh_version(self) -> int | None:
        """The version of a commit made now, when this process has no recent reading to
        carry on (module docstring); None when it has one. Raises the commit's error."""
        with self._lock:
            window = self._offsets
        mono = self._monotonic()
        if not self._writable or self._commit_version is None or (
            window is not None and 0 <= mono - window[0] < 2 * OFFSET_WINDOW
        ):
            return None
        return self._commit_version(self._db.create_transaction())

    def _reading(self, tr: Transaction, fresh: int | None = None) -> tuple[int, float]:
        version = self._read_version(tr) if fresh is None else fresh
        raw = tr.snapshot.get(ANCHOR_KEY)
        anchor = _ANCHOR.unpack(raw) if raw is not None and len(raw) == _ANCHOR.size else None
        with self._lock:
            last = self._last
        if anchor is None or anchor[0] > version:
            moment = self._wall()  # no anchor yet, or a new cluster: start from this host
            if last is not None:  # ... but never before what this process saw already
                moment = max(moment, last[1] + max(0.0, self._monotonic() - last[2]))
            self._write(tr, version, moment)
            return version, moment
        moment = anchor[1] + (version - anchor[0]) / VERSIONS_PER_SECOND
        if last is not None and anchor[0] <= last[0] <= version:
            elapsed = max(0.0, self._monotonic() - last[2])
            expected = last[1] + elapsed
            if moment > expected + JUMP_SLACK + elapsed * 0.01:
                self._write(tr, version, expected)
                return version, expected
        return version, moment

    def _write(self, tr: Transaction, version: int, moment: float) -> None:
        if not self._writable:
            return
        # A real read of the anchor: two processes re-anchoring at once conflict, and the one
        # that retries adopts the other's anchor.
        tr.add_read_conflict_key(ANCHOR_KEY)
        tr.set(ANCHOR_KEY, _ANCHOR.pack(version, moment))
        tr.commit()


def _committed(tr: Transaction) -> int:
    """Commit a blind write and return the commit's version (a versionstamp's first 8 bytes):
    the cluster's version now, where a read version may be that of a commit seconds ago."""
    stamp = tr.get_versionstamp()
    tr.set(TICK_KEY, b"")
    tr.commit()
    return int.from_bytes(stamp.wait()[:8], "big")
