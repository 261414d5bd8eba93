"""The lease keeper: extends the leases of every in-flight job every ``extend_interval`` (up to
500 per round of transactions, each transaction cut at ``BATCH_BYTES``), and enforces
``@job(timeout=...)``.

A handler learns that its lease is gone (it timed out, the job was cancelled, or another
consumer took it after the lease expired) through ``meta.lease_lost``, which the keeper sets:
at the timeout itself, or at the first extension round after the cancel, so within
``extend_interval`` seconds (``item_lease / 3`` by default).

Time: a lease's expiry is the store's time (``Database.store_time()``, one clock every worker
shares, DESIGN.md §8), never this host's wall clock, so a skewed or stepped clock can neither
let a lease lapse nor make it look lapsed. Rounds are paced on the monotonic clock, and also
whenever the store's time has moved ``extend_interval`` since the last round: either clock
can only make rounds come sooner, never later (and a test's injected store clock drives them).
Timeouts likewise: a handler times out when the monotonic clock or the store's time has run
``timeout`` seconds since it started, so a wall-clock step neither fires nor holds one off.

A transactional handler's lease is left alone while its transaction may be open (see
``consumer/transactional.py``): extending it would move the lease entry that transaction
read, and refuse its commit (1020).

An extension writes small keys only, never the job record and its payload (issue 14; see
``core.records``, "extended leases"): each lease is passed with the expiry this keeper knows
for it, so its keys are found without reading the record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from quick_queue.consumer.backoff import Outage, is_transient
from quick_queue.consumer.executor import timeout_outcome
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.consumer.settler import Settler, why_lost
from quick_queue.context import QueueContext
from quick_queue.core.leases import extend_leases
from quick_queue.core.settle import BATCH_BYTES
from quick_queue.events import OTHER_COUNTERS, EventKind, EventStream, JobEvent
from quick_queue.models import to_us

log = logging.getLogger("quick_queue.worker")
EXTEND_CHUNK = 500  # leases claimed at once; their transactions are cut by bytes


def store_time_or_none(context: QueueContext) -> float | None:
    """The store's time, or None when it cannot be read now (FoundationDB unreachable): the
    caller then goes by the monotonic clock alone."""
    try:
        return context.db.store_time()
    except Exception:  # noqa: BLE001 - see the docstring
        return None


class RoundPacer:
    """When the next extension round is due: ``interval`` seconds after the last one on the
    monotonic clock, or on the store's clock, whichever comes first. The store's time is read
    at most every ``STORE_CHECK`` seconds (on FoundationDB each reading is a read version)."""

    STORE_CHECK = 0.5

    def __init__(self, store_time: Callable[[], float], interval: float) -> None:
        self.store_time = store_time
        self.interval = interval
        self.next_mono = time.monotonic() + interval
        self.next_store = self._store() or 0.0
        self.next_store += interval
        self.checked = time.monotonic()

    def _store(self) -> float | None:
        try:
            return self.store_time()
        except Exception:  # noqa: BLE001 - the monotonic clock alone still paces the rounds
            return None

    def due(self) -> bool:
        mono = time.monotonic()
        if mono >= self.next_mono:
            return self._start(mono)
        if mono - self.checked >= min(self.STORE_CHECK, self.interval / 2):
            self.checked = mono
            store = self._store()
            if store is not None and store >= self.next_store:
                return self._start(mono, store)
        return False

    def _start(self, mono: float, store: float | None = None) -> bool:
        self.next_mono = mono + self.interval
        store = store if store is not None else self._store()
        if store is not None:
            self.next_store = store + self.interval
        return True


class Keeper:
    def __init__(
        self, context: QueueContext, inflight: InFlight, settler: Settler, events: EventStream,
        on_overrun: Callable[[], None],
    ) -> None:
        self.context = context
        self.inflight = inflight
        self.settler = settler
        self.events = events
        self.on_overrun = on_overrun  # called when a handler outlives its timeout
        self.wake = threading.Event()
        self.outage = Outage("extending leases")
        self.closed = False
        self.extended = 0  # leases extended so far (read by quick_queue.metrics at scrape time)

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def loop(self) -> None:
        settings = self.context.settings
        pacer = RoundPacer(self.context.db.store_time, settings.extend_interval)
        while not self.closed:
            # Tick fast only while some running job has a timeout to enforce; an idle
            # consumer then costs next to no CPU (and never slower than extend_interval: a
            # short item_lease would expire between ticks).
            with self.inflight.cond:
                watching = self.inflight.watching_deadlines()
            self.wake.wait(0.05 if watching else min(0.5, settings.extend_interval))
            if not self.closed:
                self.wake.clear()
            self._enforce_timeouts()
            if pacer.due():
                self.extend_all()

    def _enforce_timeouts(self) -> None:
        with self.inflight.cond:
            if not self.inflight.watching_deadlines():
                return
        mono, store = time.monotonic(), store_time_or_none(self.context)
        with self.inflight.cond:
            timed_out = [
                r for r in self.inflight.entries.values()
                if r.deadline is not None and not r.abandoned and r.started
                and r.outcome_kind is None and (mono > r.deadline or (
                    store is not None and r.store_deadline is not None
                    and store > r.store_deadline))
            ]
            for running in timed_out:
                running.abandoned = True
                # The handler keeps its thread and slot until it returns (see inflight).
                self.inflight.overrunning[running.key] = running
        for running in timed_out:
            running.meta.lease_lost.set()
            spec = running.spec
            log.warning("%s %s timed out after %g s; its worker stays busy until the "
                        "handler returns", spec.name if spec else "?", running.where,
                        spec.timeout if spec and spec.timeout else 0)
            self.settler.submit(running, timeout_outcome(
                running, store if store is not None else self.context.clock.now(),
                self.context.settings, self.context.rng))
        if timed_out:
            self.on_overrun()

    def extend_all(self) -> None:
        with self.inflight.cond:
            entries = self.inflight.unsettled()
        for start in range(0, len(entries), EXTEND_CHUNK):
            chunk = self._claim(entries[start : start + EXTEND_CHUNK])
            if not chunk:
                continue
            try:
                self._extend(chunk)
            finally:
                with self.inflight.cond:
                    for running in chunk:
                        running.extending = False
                    self.inflight.cond.notify_all()  # a transactional handler may wait

    def _claim(self, chunk: list[Running]) -> list[Running]:
        """The leases of ``chunk`` this round may extend, marked as being extended: not those
        whose transactional handler's transaction may be open (``Running.tx_until``), which
        in turn waits for a marked extension to commit before its transaction starts."""
        mono = time.monotonic()
        with self.inflight.cond:
            claimed = [r for r in chunk if not r.settled and r.tx_until <= mono]
            for running in claimed:
                running.extending = True
        return claimed

    def _extend(self, chunk: list[Running]) -> None:
        context = self.context
        lease = to_us(context.settings.item_lease)
        # with the expiry each lease is known to have: the extension reads small keys only
        leases = [(r.job.tenant, r.job.record.job_id, r.job.token, r.job.record.at)
                  for r in chunk]
        kept: list[bool] = []
        try:
            now = to_us(context.db.store_time())  # leases are in the store's time
            while len(kept) < len(leases):  # each transaction stops at its byte budget
                kept += context.db.transact(extend_leases, context.layout, leases[len(kept):],
                                            now, lease, budget=BATCH_BYTES)
        except Exception as error:
            # Tried again next round: a lease outlasts several rounds, one that expires
            # meanwhile is fenced off by its token, and the handler is told at the next round
            # that works. What committed before the error is taken in below.
            if is_transient(error):
                self.outage.failed(error)
            else:
                log.exception("lease extension failed")
            if not kept:
                return
        else:
            self.outage.recovered()
        self.extended += sum(kept)  # only this thread writes it
        lost = []
        with self.inflight.cond:
            for running, ok in zip(chunk, kept, strict=False):
                if ok:
                    running.job.record.at = max(running.job.record.at, now + lease)
                elif not running.settled and not running.meta.lease_lost.is_set():
                    lost.append(running)
        for running in lost:
            running.meta.lease_lost.set()
            record = running.job.record
            reason = str(why_lost(self.context, running))  # cancelled, taken, dead, ...
            self.events.emit(JobEvent(
                EventKind.LEASE_LOST, running.job.tenant, record.topic, record.job_id,
                record.attempt, reason=reason, counters=OTHER_COUNTERS[EventKind.LEASE_LOST],
            ))
