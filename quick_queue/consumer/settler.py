"""The settler: commits outcomes in batches (one transaction per batch) and tells the event
stream what each did.

If a batch's transaction fails as a whole, its outcomes are settled again one by one, so one
outcome that cannot be applied never takes its neighbours' completions with it (those jobs
would otherwise run again when their leases expire).

A batch is cut by bytes, not only by count: its transaction stops taking outcomes at
``BATCH_BYTES`` (FoundationDB refuses 10 MB and advises under 1 MB; 512 retried jobs with
20 kB payloads would pass 10 MB), and the outcomes it did not take go first into the next
transaction, at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import attrgetter, itemgetter

from quick_queue.consumer.backoff import Outage, is_transient
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.context import QueueContext
from quick_queue.core.settle import BATCH_BYTES, lease_loss, settle_many
from quick_queue.events import (
    OTHER_COUNTERS,
    EventBatch,
    EventKind,
    EventStream,
    JobEvent,
    outcome_counters,
)
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us
from quick_queue.outcomes import EFFECTS, Effect, LeaseLoss, Outcome, OutcomeKind, retry_effect

log = logging.getLogger("quick_queue.worker")


class Settler:
    IDLE_POLL = 0.5  # seconds an idle loop waits before it looks again unasked

    def __init__(self, context: QueueContext, inflight: InFlight, events: EventStream) -> None:
        self.context = context
        self.inflight = inflight
        self.events = events
        # Submitters append and only the loop pops, without the lock: a deque's append and
        # popleft are atomic under the interpreter lock (issue 10: ``with`` a lock around the
        # append cost about 1.9k instructions a job, callgrind, 3.7k -> 1.8k a submit).
        self._pending: deque[tuple[Running, Outcome]] = deque()
        # ``with _lock`` is ``with _wake`` without Condition's Python-level enter and exit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # the loop waits for outcomes: only then does a submit notify (Condition.notify costs
        # ~1 µs of Python even with no waiter, once a job, issue 10). Set under ``_lock``.
        self._idle = False
        self._closed = False
        self.outage = Outage("settling outcomes")

    def submit(self, running: Running, outcome: Outcome) -> None:
        """Queue ``outcome`` for settling, unless another outcome of this run went first."""
        with self.inflight.lock:
            if not self.inflight.claim_outcome(running, outcome.kind):
                return
        self.submit_claimed(running, outcome)

    def submit_claimed(self, running: Running, outcome: Outcome) -> None:
        """Queue ``outcome``, which the caller claimed (``InFlight.claim_outcome``)."""
        self._pending.append((running, outcome))
        # Read after the append: a loop that set ``_idle`` before it looks at ``_pending``
        # once more (``loop``) either sees this outcome or is woken here (it holds the lock
        # from setting ``_idle`` until its wait releases it, so the notify reaches the wait)
        if self._idle:
            with self._lock:
                self._wake.notify()

    def pending(self) -> bool:
        return bool(self._pending)

    def close(self) -> None:
        """Let the loop return once nothing is pending."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()

    def loop(self) -> None:
        batch_size = self.context.settings.completion_batch
        pending = self._pending
        take = pending.popleft
        while True:
            if not pending:
                with self._wake:
                    while not pending:
                        if self._closed:
                            return
                        self._idle = True
                        try:
                            if not pending:  # (an outcome appended before ``_idle`` was set)
                                self._wake.wait(self.IDLE_POLL)  # woken by an outcome, a close
                        finally:
                            self._idle = False
            # only this loop takes outcomes: at least ``len(pending)`` are there
            batch = [take() for _ in range(min(batch_size, len(pending)))]
            applied, failing = self._apply(batch)
            self.finish_many(batch[:len(applied)], applied)
            if len(applied) < len(batch):
                # the store is failing: the rest waits for it; else the batch was cut by its
                # byte budget and the rest goes first into the next transaction, now
                self._put_back(batch[len(applied):], wait=failing)

    def _put_back(self, batch: list[tuple[Running, Outcome]], *, wait: bool = True) -> None:
        end = time.monotonic() + (self.outage.delay() if wait else 0.0)
        self._pending.extendleft(reversed(batch))  # first again, in their order
        with self._wake:
            # new outcomes do not cut the wait short; a shutdown does (its flush gives up
            # after FLUSH_LIMIT seconds)
            while not self._closed and (left := end - time.monotonic()) > 0:
                self._wake.wait(left)

    def _apply(self, batch: list[tuple[Running, Outcome]]) -> tuple[list[bool], bool]:
        """Settle the batch; returns whether each outcome was applied, for a prefix of the
        batch, and whether the store is failing. The outcomes left out met a transient store
        error (disk full, the store unreachable: failing) and are tried again later, or did
        not fit the transaction's byte budget (not failing). If the batch fails otherwise,
        its outcomes are settled one by one, so one bad outcome cannot lose the others."""
        try:
            applied = self._settle([o for _, o in batch])
        except Exception as error:
            if is_transient(error):
                self.outage.failed(error)
                return [], True
            if len(batch) == 1:
                log.exception("could not settle %s for %s; its lease will expire",
                              batch[0][1].kind, batch[0][0].where)
                return [False], False
            log.warning("a batch of %d outcomes failed to settle; settling them one by one",
                        len(batch), exc_info=True)
            applied = []
            for item in batch:
                one, failing = self._apply([item])
                if failing:
                    return applied, True
                applied += one
            return applied, False
        self.outage.recovered()
        return applied, False

    def _settle(self, outcomes: list[Outcome]) -> list[bool]:
        settings = self.context.settings
        return self.context.db.transact(
            settle_many, self.context.layout, outcomes, to_us(self.context.db.store_time()),
            to_us(settings.pointer_slack), settings.max_snoozes,
            on_kept=self.context.db.notify_change,  # wakes queue.result() waiters (H)
            budget=BATCH_BYTES,
        )

    def finish(self, running: Running, outcome: Outcome, *, applied: bool) -> None:
        """The outcome is settled (``applied``) or was refused (the lease was gone): free the
        slot and emit the event."""
        self.finish_many([(running, outcome)], [applied])

    def finish_many(self, done: list[tuple[Running, Outcome]], applied: list[bool]) -> None:
        """``finish`` for each of ``done``, their slots freed under one lock and one wake-up
        of the scanner, their events emitted in one ``emit_many`` (in ``done``'s order)."""
        with self.inflight.lock:
            self.inflight.remove_many(list(map(_RUNNING, done)))
        # one clock reading for the batch: its events are emitted together
        now = time.monotonic()
        if all(applied) and set(map(_KIND, map(_OUTCOME, done))) == _ONLY_DONE:  # (in C)
            # a batch of completions (the usual one): its events are built only if a
            # subscriber reads them (``EventBatch``)
            self.events.emit_many(EventBatch(
                functools.partial(_completed_events, done, now), _COMPLETED_KINDS,
                dict.fromkeys(_DONE_EVENT[1], len(done))))
            return
        self.events.emit_many([
            _completed_events([(running, outcome)], now)[0]
            if ok and outcome.kind is OutcomeKind.DONE else self._event(running, outcome, ok, now)
            for (running, outcome), ok in zip(done, applied, strict=True)])

    def _event(self, running: Running, outcome: Outcome, applied: bool,
               now: float) -> JobEvent:
        record = running.job.record
        duration = now - running.started_mono if running.started_mono else None
        if applied:  # (an applied completion's event is built in ``finish_many``)
            kind, counters = _event_of(
                retry_effect(record.attempt, record.max_retries)
                if outcome.kind is OutcomeKind.RETRY else EFFECTS[outcome.kind])
        else:
            loss = why_lost(self.context, running)
            kind = EventKind.CANCELLED if loss is LeaseLoss.CANCELLED else EventKind.STALE
            return JobEvent(kind, running.job.tenant, record.topic, record.job_id,
                            record.attempt, duration, outcome.kind, f"lease {loss}",
                            OTHER_COUNTERS[kind])
        return JobEvent(kind, running.job.tenant, record.topic, record.job_id, record.attempt,
                        duration, outcome.kind, outcome.reason, counters)


def _completed_events(done: list[tuple[Running, Outcome]], now: float) -> list[JobEvent]:
    """The events of applied completions (``now``: when they are emitted, monotonic)."""
    kind, counters = _DONE_EVENT
    events = []
    for running, outcome in done:
        job = running.job
        record = job.record
        started = running.started_mono
        events.append(JobEvent(kind, job.tenant, record.topic, record.job_id, record.attempt,
                               now - started if started else None, outcome.kind,
                               outcome.reason, counters))
    return events


@functools.cache
def _event_of(effect: Effect) -> tuple[EventKind, tuple[str, ...]]:
    """The event kind and process counters of an applied outcome's effect (a handful of
    effects exist: worked out once each, not per job)."""
    return EventKind(effect.event), outcome_counters(effect)


_DONE_EVENT = _event_of(EFFECTS[OutcomeKind.DONE])
_COMPLETED_KINDS = frozenset((_DONE_EVENT[0],))
_ONLY_DONE = {OutcomeKind.DONE}
_OUTCOME: Callable[[tuple[Running, Outcome]], Outcome] = itemgetter(1)
_RUNNING: Callable[[tuple[Running, Outcome]], Running] = itemgetter(0)
_KIND: Callable[[Outcome], OutcomeKind] = attrgetter("kind")


def why_lost(context: QueueContext, running: Running) -> LeaseLoss:
    """Why this consumer's lease on the job is gone (one read; ``TAKEN`` if the read fails:
    only the wording of an event depends on it)."""
    job = running.job

    def read(tr: Transaction) -> LeaseLoss:
        return lease_loss(tr.snapshot, context.layout, job.tenant, job.record.job_id, job.token)

    try:
        return context.db.transact(read)
    except Exception:  # noqa: BLE001
        return LeaseLoss.TAKEN
