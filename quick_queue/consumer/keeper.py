"""The lease keeper: extends the leases of every in-flight job (one transaction per 500) every
``extend_interval``, and enforces ``@job(timeout=...)``.

A handler learns that its lease is gone (it timed out, the job was cancelled, or another
consumer took it after the lease expired) through ``meta.lease_lost``, which the keeper sets:
at the timeout itself, or at the first extension round after the cancel, so within
``extend_interval`` seconds (``item_lease / 3`` by default).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from quick_queue.consumer.executor import timeout_outcome
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.consumer.settler import Settler, job_is_gone
from quick_queue.context import QueueContext
from quick_queue.core.settle import extend_leases
from quick_queue.events import OTHER_COUNTERS, EventKind, EventStream, JobEvent
from quick_queue.models import to_us

log = logging.getLogger("quick_queue.worker")
EXTEND_CHUNK = 500  # leases per extension transaction


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
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    def loop(self) -> None:
        settings = self.context.settings
        clock = self.context.clock
        next_extend = clock.now() + settings.extend_interval
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
            now = clock.now()
            if now >= next_extend:
                next_extend = now + settings.extend_interval
                self.extend_all()

    def _enforce_timeouts(self) -> None:
        now = self.context.clock.now()
        with self.inflight.cond:
            timed_out = [
                r for r in self.inflight.entries.values()
                if r.deadline is not None and not r.abandoned and r.started
                and now > r.deadline and r.outcome_kind is None
            ]
            for running in timed_out:
                running.abandoned = True
                # The handler keeps its thread and slot until it returns (see inflight).
                self.inflight.overrunning[running.key] = running
        for running in timed_out:
            running.meta.lease_lost.set()
            spec = running.spec
            log.warning("%s %s/%s timed out after %g s; its worker stays busy until the "
                        "handler returns", spec.name if spec else "?", *running.key,
                        spec.timeout if spec and spec.timeout else 0)
            self.settler.submit(running, timeout_outcome(
                running, self.context.clock.now(), self.context.settings, self.context.rng))
        if timed_out:
            self.on_overrun()

    def extend_all(self) -> None:
        with self.inflight.cond:
            entries = self.inflight.unsettled()
        for start in range(0, len(entries), EXTEND_CHUNK):
            self._extend(entries[start : start + EXTEND_CHUNK])

    def _extend(self, chunk: list[Running]) -> None:
        context = self.context
        lease = to_us(context.settings.item_lease)
        leases = [(r.job.tenant, r.job.record.job_id, r.job.token) for r in chunk]
        now = to_us(context.clock.now())
        try:
            kept = context.db.transact(extend_leases, context.layout, leases, now, lease)
        except Exception:
            log.exception("lease extension failed")
            return
        lost = []
        with self.inflight.cond:
            for running, ok in zip(chunk, kept, strict=True):
                if ok:
                    running.job.record.at = max(running.job.record.at, now + lease)
                elif not running.settled and not running.meta.lease_lost.is_set():
                    lost.append(running)
        for running in lost:
            running.meta.lease_lost.set()
            record = running.job.record
            gone = job_is_gone(self.context, running)
            reason = "cancelled" if gone else "taken by another consumer"
            self.events.emit(JobEvent(
                EventKind.LEASE_LOST, running.job.tenant, record.topic, record.job_id,
                record.attempt, reason=reason, counters=OTHER_COUNTERS[EventKind.LEASE_LOST],
            ))
