"""The settler: commits outcomes in batches (one transaction per batch) and tells the event
stream what each did.

If a batch's transaction fails as a whole, its outcomes are settled again one by one, so one
outcome that cannot be applied never takes its neighbours' completions with it (those jobs
would otherwise run again when their leases expire).
"""

from __future__ import annotations

import logging
import threading
import time

from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.context import QueueContext
from quick_queue.core.settle import settle_many
from quick_queue.events import (
    OTHER_COUNTERS,
    EventKind,
    EventStream,
    JobEvent,
    outcome_counters,
)
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us
from quick_queue.outcomes import EFFECTS, Outcome, OutcomeKind, retry_effect

log = logging.getLogger("quick_queue.worker")


class Settler:
    def __init__(self, context: QueueContext, inflight: InFlight, events: EventStream) -> None:
        self.context = context
        self.inflight = inflight
        self.events = events
        self._pending: list[tuple[Running, Outcome]] = []
        self._wake = threading.Condition()
        self._closed = False

    def submit(self, running: Running, outcome: Outcome) -> None:
        """Queue ``outcome`` for settling, unless another outcome of this run went first."""
        with self.inflight.cond:
            if not self.inflight.claim_outcome(running, outcome.kind):
                return
        with self._wake:
            self._pending.append((running, outcome))
            self._wake.notify()

    def pending(self) -> bool:
        with self._wake:
            return bool(self._pending)

    def close(self) -> None:
        """Let the loop return once nothing is pending."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()

    def loop(self) -> None:
        batch_size = self.context.settings.completion_batch
        while True:
            with self._wake:
                while not self._pending:
                    if self._closed:
                        return
                    self._wake.wait(0.5)  # woken by every outcome and at shutdown
                batch = self._pending[:batch_size]
                del self._pending[:batch_size]
            applied = self._apply(batch)
            for (running, outcome), ok in zip(batch, applied, strict=True):
                self.finish(running, outcome, applied=ok)

    def _apply(self, batch: list[tuple[Running, Outcome]]) -> list[bool]:
        try:
            return self._settle([o for _, o in batch])
        except Exception:
            if len(batch) == 1:
                log.exception("could not settle %s %s/%s; its lease will expire",
                              batch[0][1].kind, *batch[0][0].key)
                return [False]
            log.warning("a batch of %d outcomes failed to settle; settling them one by one",
                        len(batch), exc_info=True)
        return [self._apply([item])[0] for item in batch]

    def _settle(self, outcomes: list[Outcome]) -> list[bool]:
        settings = self.context.settings
        return self.context.db.transact(
            settle_many, self.context.layout, outcomes, to_us(self.context.db.store_time()),
            to_us(settings.pointer_slack), settings.max_snoozes,
        )

    def finish(self, running: Running, outcome: Outcome, *, applied: bool) -> None:
        """The outcome is settled (``applied``) or was refused (the lease was gone): free the
        slot and emit the event."""
        with self.inflight.cond:
            self.inflight.remove(running)
        self.events.emit(self._event(running, outcome, applied))

    def _event(self, running: Running, outcome: Outcome, applied: bool) -> JobEvent:
        record = running.job.record
        duration = time.monotonic() - running.started_mono if running.started_mono else None
        if applied:
            effect = (retry_effect(record.attempt, record.max_retries)
                      if outcome.kind is OutcomeKind.RETRY else EFFECTS[outcome.kind])
            kind, counters = EventKind(effect.event), outcome_counters(effect)
        else:
            kind = EventKind.CANCELLED if self._cancelled(running) else EventKind.STALE
            counters = OTHER_COUNTERS[kind]
        return JobEvent(kind, running.job.tenant, record.topic, record.job_id, record.attempt,
                        duration, outcome.kind, outcome.reason, counters)

    def _cancelled(self, running: Running) -> bool:
        """A refused outcome: cancelled if the job is gone, stale if another lease holds it.
        (A job finished by another consumer after this lease expired looks cancelled too.)"""
        return job_is_gone(self.context, running)


def job_is_gone(context: QueueContext, running: Running) -> bool:
    """Whether the job's record is gone from the store (cancelled, or finished elsewhere)."""
    item = context.layout.zone(running.job.tenant).item(running.job.record.job_id)

    def read(tr: Transaction) -> bool:
        return tr.snapshot.get(item) is None

    try:
        return context.db.transact(read)
    except Exception:  # noqa: BLE001 - only the wording of an event depends on it
        return False
