"""The embedded engine's time (``SQLiteDatabase.store_time``): the host's boot clock, anchored
once per boot in the store.

Every process using one SQLite file runs on one host, so they can share a better clock than
the host's wall clock, which may be stepped (NTP, an administrator, a VM resumed) or differ
per process (``faketime``, a patched ``time.time``). Leases compare against this time, so a
stepped or skewed wall clock can neither expire a running job's lease nor keep a dead one.

``CLOCK_BOOTTIME`` is system-wide (one clock for every process of a boot) and is never
stepped. It counts time spent suspended, which ``CLOCK_MONOTONIC`` does not: after a laptop
slept an hour, a time built on ``CLOCK_MONOTONIC`` would lag the wall clock by that hour, and
jobs that producers scheduled on their wall clocks would start an hour late. (Where
``CLOCK_BOOTTIME`` is missing, ``CLOCK_MONOTONIC``, then ``time.monotonic()``.)

The first process after a boot writes ``(boot id, its wall time, boot clock)`` into the
store's ``qq_meta`` table; every process then computes::

    store time = anchor wall time + (boot clock now - anchor boot clock)

The anchor is read and written inside one ``BEGIN IMMEDIATE`` transaction, so processes that
start together settle on one anchor. The boot id comes from
``/proc/sys/kernel/random/boot_id``; where there is none (not Linux), an anchor is taken as
this boot's when the boot clock has not gone below it and both estimate the boot instant
within ``SAME_BOOT_SLACK`` seconds of each other. A store that cannot be read or written
falls back to an anchor of this process's own (the wall clock at its first reading, then the
boot clock): still never stepped within the process, logged once.

Known limits, for the record: the anchor's wall time is whatever the first process of the
boot read, so a store anchored by a process whose wall clock was wrong stays offset by that
much until the next boot: consistently for every process, so leases are safe, and a
``JobQueue``'s due times are on this same time by default (``quick_queue.clock.StoreClock``);
only the timestamps people read are off, and due times from a producer given a wall clock of
its own. Linux time namespaces can give containers their own boot clock offset; processes in
different time namespaces should not share a file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("quick_queue.kv")

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
#: Without a boot id: how far two estimates of the boot instant (wall - boot clock) may
#: differ and still be one boot. Larger than any sane skew between processes' wall clocks.
SAME_BOOT_SLACK = 3600.0
#: ``qq_meta`` rows of the anchor (integers: the table's values are).
BOOT_ROW, WALL_ROW, MONO_ROW = "clock.boot", "clock.wall_us", "clock.boot_clock_us"


def boot_clock() -> Callable[[], float]:
    """The best system-wide clock that is never stepped (see the module docstring)."""
    for name in ("CLOCK_BOOTTIME", "CLOCK_MONOTONIC"):
        clock_id = getattr(time, name, None)
        if clock_id is None:
            continue
        try:
            time.clock_gettime(clock_id)
        except OSError:
            continue
        # A partial calls straight into C: a lambda's Python frame cost ~40 % of store_time
        # (called a few times a job by the worker; callgrind, issue 10).
        return functools.partial(time.clock_gettime, clock_id)
    return time.monotonic


def boot_id(path: str = BOOT_ID_PATH) -> int | None:
    """This boot's id as a positive 60-bit integer (a ``qq_meta`` value), or None."""
    try:
        with open(path, encoding="ascii") as file:
            text = file.read().strip().replace("-", "")
        return int(text[:15], 16) or None
    except (OSError, ValueError):
        return None


class Anchor:
    """One boot's anchor: the wall time at boot-clock time ``mono``."""

    __slots__ = ("boot", "mono", "wall")

    def __init__(self, boot: int | None, wall: float, mono: float) -> None:
        self.boot = boot
        self.wall = wall
        self.mono = mono

    def same_boot(self, boot: int | None, wall: float, mono: float) -> bool:
        if mono < self.mono:
            return False  # the boot clock went back: a reboot
        if boot is not None or self.boot is not None:
            return boot == self.boot
        return abs((wall - mono) - (self.wall - self.mono)) <= SAME_BOOT_SLACK


class HostClock:
    """``now()``: the store's time on the embedded engine (see the module docstring).

    ``connect()`` opens a connection to the store's file (None: keep the anchor in this
    process only); ``read_only`` reads an anchor but never writes one. ``wall``, ``clock``
    and ``boot`` are for tests."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection] | None,
        *,
        read_only: bool = False,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] | None = None,
        boot: Callable[[], int | None] = boot_id,
    ) -> None:
        self._connect = connect
        self._read_only = read_only
        self._wall = wall
        self._clock = clock or boot_clock()
        self._boot = boot
        self._lock = threading.Lock()
        self._anchor: Anchor | None = None
        # The anchor's wall time minus its boot-clock reading, once it is taken: now() is then
        # one addition (a few calls a job in the worker).
        self._offset: float | None = None

    def now(self) -> float:
        offset = self._offset
        if offset is None:
            with self._lock:
                anchor = self._anchor
                if anchor is None:
                    anchor = self._anchor = self._take_anchor()
                offset = self._offset = anchor.wall - anchor.mono
        return offset + self._clock()

    def _take_anchor(self) -> Anchor:
        ours = Anchor(self._boot(), self._wall(), self._clock())
        if self._connect is None:
            return ours
        try:
            conn = self._connect()
        except Exception as error:  # noqa: BLE001 - any failure: this process's own anchor
            return self._alone(ours, error)
        try:
            return self._shared(conn, ours)
        except sqlite3.Error as error:
            return self._alone(ours, error)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _shared(self, conn: sqlite3.Connection, ours: Anchor) -> Anchor:
        """The boot's anchor from the store, written there first if it has none."""
        if not self._read_only:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: all settle on one anchor
        try:
            stored = _read(conn)
            if stored is not None and stored.same_boot(ours.boot, ours.wall, ours.mono):
                return stored
            if not self._read_only:
                wall_us, mono_us = round(ours.wall * 1e6), round(ours.mono * 1e6)
                conn.executemany(
                    "INSERT OR REPLACE INTO qq_meta (name, value) VALUES (?, ?)",
                    [(BOOT_ROW, ours.boot or 0), (WALL_ROW, wall_us), (MONO_ROW, mono_us)],
                )
                conn.execute("COMMIT")
                # The anchor as stored (whole microseconds), as every other process reads it:
                # with its own unrounded readings this process's offset differed from theirs
                # by up to a microsecond, and a time read here could follow, by less than
                # one, a later time read through another connection (a failed CI run).
                return Anchor(ours.boot, wall_us / 1e6, mono_us / 1e6)
            return ours
        finally:
            if conn.in_transaction:  # it failed (a full disk...): nothing half-written
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")

    @staticmethod
    def _alone(ours: Anchor, error: BaseException) -> Anchor:
        log.warning("could not share the store's clock anchor (%s); this process keeps its "
                    "own: leases stay safe from wall-clock steps here, but processes whose "
                    "wall clocks disagree may disagree on lease times", error)
        return ours


def _read(conn: sqlite3.Connection) -> Anchor | None:
    rows = dict(conn.execute(
        "SELECT name, value FROM qq_meta WHERE name IN (?, ?, ?)", (BOOT_ROW, WALL_ROW, MONO_ROW)
    ).fetchall())
    try:
        boot, wall, mono = int(rows[BOOT_ROW]), int(rows[WALL_ROW]), int(rows[MONO_ROW])
    except (KeyError, TypeError, ValueError):
        return None
    return Anchor(boot or None, wall / 1e6, mono / 1e6)
