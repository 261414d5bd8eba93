"""The consumer runtime of one process: a scanner, worker threads, a settler that commits
outcomes in batches, and a lease keeper that extends leases and enforces timeouts.

::

    scanner ──lease zone, dequeue──▶ local queue ──▶ workers ──outcome──▶ settler ──▶ store
                                                        ▲                         (one txn per
    keeper: extends all in-flight leases in one txn ────┘  sets meta.lease_lost     batch)

Capacity is ``concurrency`` running jobs plus as many prefetched ones, so the scanner fetches the
next batch while the current one runs. All database work is batched: one transaction per zone
visit, per batch of outcomes and per round of lease extensions.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

from quick_queue.consumer.executor import (
    Running,
    bad_payload_outcome,
    call_handler,
    dead_on_arrival,
    make_meta,
    timeout_outcome,
    to_outcome,
)
from quick_queue.context import QueueContext
from quick_queue.core.dequeue import ZoneNotDue, dequeue
from quick_queue.core.pointers import scan_due
from quick_queue.core.records import flush_stats
from quick_queue.core.settle import extend_leases, settle, settle_many
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KVError, is_retryable, maybe_committed
from quick_queue.models import JobRecord, LeasedJob, to_us
from quick_queue.outcomes import Outcome, OutcomeKind
from quick_queue.telemetry import Counters

log = logging.getLogger("quick_queue.worker")
TRANSACTIONAL_RETRY_LIMIT = 5  # retries of a transactional job's transaction per attempt


class _Stale(Exception):
    """A transactional job's lease was lost: its writes must not commit."""


class _NotDone(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


@dataclass
class Summary:
    """What a ``drain`` or ``run`` did, counted by this process."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    snoozed: int = 0
    discarded: int = 0
    released: int = 0
    stale: int = 0
    lease_races: int = 0
    zone_visits: int = 0
    timed_out: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class Consumer:
    def __init__(
        self, context: QueueContext, concurrency: int, *, until_idle: bool = False,
        prefetch: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.context = context
        self.db = context.db
        self.settings = context.settings
        self.clock = context.clock
        self.concurrency = concurrency
        self.capacity = concurrency + (concurrency if prefetch is None else prefetch)
        self.until_idle = until_idle
        self.rng = context.rng
        self.counters = Counters()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._keeper_wake = threading.Event()
        self._deadline: float | None = None
        # dequeued, waiting for a worker; None tells a worker to exit
        self._local: SimpleQueue[Running | None] = SimpleQueue()
        self._running = 0
        self._inflight: dict[tuple[str, str], Running] = {}  # until settled
        self._outcomes: list[tuple[Running, Outcome]] = []
        self._settle_wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._workers = 0
        self._closed_workers = False

    # -- public -----------------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> Summary:
        """Consume until ``stop()`` (or, with ``until_idle``, until no due work is left)."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        self._deadline = deadline
        self._start_threads()
        timed_out = False
        try:
            timed_out = self._scan_loop(deadline)
        finally:
            self._shutdown()
        summary = self.summary()
        summary.timed_out = timed_out
        return summary

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    def summary(self) -> Summary:
        c = self.counters.snapshot()
        known = {f for f in Summary.__dataclass_fields__ if f not in ("extra", "timed_out")}
        values: dict[str, Any] = {k: c.get(k, 0) for k in known}
        return Summary(**values,
                       extra={k: v for k, v in c.items() if k not in known})

    # -- threads ----------------------------------------------------------------------------
    def _start_threads(self) -> None:
        for _ in range(self.concurrency):
            self._spawn_worker()
        for target, name in ((self._settle_loop, "settler"), (self._keeper_loop, "keeper")):
            thread = threading.Thread(target=target, name=f"quick_queue-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn_worker(self) -> None:
        with self._lock:
            self._workers += 1
        thread = threading.Thread(target=self._work_loop, name="quick_queue-worker", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _now(self) -> float:
        return self.clock.now()

    # -- scanner ----------------------------------------------------------------------------
    def _free(self) -> int:
        return self.capacity - len(self._inflight)

    def _scan_loop(self, deadline: float | None) -> bool:
        settings = self.settings
        while not self._stopping.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return True
            with self._lock:
                free = self._free()
                if free <= 0:
                    self._lock.wait(settings.scan_interval)
                    continue
            now = to_us(self._now())
            due, next_vesting = self.db.transact(
                scan_due, self.context.layout, now, settings.peek_max
            )
            got = 0
            if due:
                k = min(settings.selection_max,
                        max(1, math.ceil(len(due) * settings.selection_frac)), len(due))
                for _vesting, tenant in self.rng.sample(due, k):
                    with self._lock:
                        free = self._free()
                    if free <= 0 or self._stopping.is_set():
                        break
                    got += self._visit(tenant, min(free, settings.dequeue_max), now)
            if got:
                continue
            if self.until_idle:
                with self._lock:
                    busy = bool(self._inflight)
                if not due and not busy:
                    return False
                if busy:
                    with self._lock:
                        self._lock.wait(0.005)
                    continue
            # Idle: jitter the wait so consumers do not scan in lockstep, but never past the
            # next pointer's time (a scheduled job starts on time).
            wait = settings.scan_interval * (0.8 + 0.4 * self.rng.random())
            if next_vesting is not None:
                wait = min(wait, max(0.0, (next_vesting - now) / 1e6))
            if due:  # due zones we could not take (leased by others): look again soon
                wait = min(wait, 0.005)
            self.db.wait_for_change(wait)
        return False

    def _visit(self, tenant: str, count: int, now: int) -> int:
        claims = self.context.claims
        if not claims.claim(tenant):
            self.counters.add("zone_busy_here")
            return 0
        try:
            return self._visit_zone(tenant, count, now)
        finally:
            claims.release(tenant)

    def _visit_zone(self, tenant: str, count: int, now: int) -> int:
        """Take the zone and lease up to ``count`` of its jobs in one transaction, tried once:
        a conflict means another consumer took the zone first (see ``core.dequeue``)."""
        settings = self.settings
        tr = self.db.create_transaction()
        tr.options.set_relaxed_durability()  # a lease undone by a power loss is taken again
        jobs: list[LeasedJob] = []
        try:
            jobs = dequeue(
                tr, self.context.layout, tenant, None, now, count=count,
                item_lease=to_us(settings.item_lease), promote_max=settings.promote_max,
                min_inactive=to_us(settings.min_inactive), new_token=self.context.new_token,
            )
            tr.commit()
        except ZoneNotDue:
            self.counters.add("zone_not_due")
            return 0
        except KVError as error:
            if not is_retryable(error):
                raise
            if maybe_committed(error) and jobs:
                # 1021: the commit may have happened. Our tokens in the records tell.
                self.counters.add("unknown_results")
                jobs = self.db.transact(self._still_ours, jobs)
            else:
                jobs = []  # not committed: nothing was leased
            if not jobs:
                self.counters.add("lease_races")  # lost the race for the zone
                return 0
        self.counters.add("zone_visits")
        for job in jobs:
            self._accept(job)
        return len(jobs)

    def _still_ours(self, tr: Transaction, jobs: list[LeasedJob]) -> list[LeasedJob]:
        zone_of = self.context.layout.zone
        raws = tr.snapshot.get_many([zone_of(j.tenant).item(j.record.job_id) for j in jobs])
        return [
            job for job, raw in zip(jobs, raws, strict=True)
            if raw is not None and JobRecord.decode(job.record.job_id, raw).token == job.token
        ]

    def _accept(self, job: LeasedJob) -> None:
        spec, doa = dead_on_arrival(job, self.context.registry)
        running = Running(job, make_meta(job), spec)
        with self._lock:
            self._inflight[(job.tenant, job.record.job_id)] = running
        if doa is None:
            self._local.put(running)
        else:
            log.warning("job %s/%s: %s", job.tenant, job.record.job_id, doa.reason)
            self._submit(running, doa)

    # -- workers ----------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while True:
            item = self._local.get()
            with self._lock:
                if item is None:
                    self._workers -= 1
                    return
                running = item
                if running.abandoned:
                    continue
                self._running += 1
                spec = running.spec
                assert spec is not None
                running.started = self._now()
                if spec.timeout is not None:
                    running.deadline = running.started + spec.timeout
                    self._keeper_wake.set()  # the keeper now watches at its fast tick
            try:
                self._execute(running)
            finally:
                with self._lock:
                    self._running -= 1
                    retire = running.abandoned and running.deadline is not None
            if retire:  # this thread overran its timeout and was replaced
                with self._lock:
                    self._workers -= 1
                return

    def _execute(self, running: Running) -> None:
        job = running.job
        spec = running.spec
        assert spec is not None
        if log.isEnabledFor(logging.INFO):
            log.info("start %s %s/%s attempt %d", job.record.topic, job.tenant,
                     job.record.job_id, job.record.attempt)
        if spec.transactional:
            self._execute_transactional(running)
            return
        result = call_handler(running)
        outcome = bad_payload_outcome(running, result) or to_outcome(
            running, result, self._now(), self.settings, self.rng
        )
        self._submit(running, outcome)

    def _execute_transactional(self, running: Running) -> None:
        job = running.job
        settings = self.settings
        layout = self.context.layout

        tries = 0

        def body(tr: Transaction) -> None:
            nonlocal tries
            tries += 1
            if tries == 1:
                # Each retry runs the handler again: a handler that outlives the transaction
                # limit (1007) would rerun forever. Past the limit it is a failed attempt.
                tr.options.set_retry_limit(TRANSACTIONAL_RETRY_LIMIT)
            elif running.abandoned or running.meta.lease_lost.is_set():
                raise _Stale()  # timed out or lease lost meanwhile: do not run it again
            running.meta.tr = tr
            result = call_handler(running)
            outcome = bad_payload_outcome(running, result) or to_outcome(
                running, result, self._now(), settings, self.rng
            )
            if outcome.kind != "done":
                raise _NotDone(outcome)
            stats: dict[tuple[str, str], int] = {}
            if not settle(tr, layout, outcome, to_us(self._now()), to_us(settings.pointer_slack),
                          settings.max_snoozes, stats):
                raise _Stale()
            stats[(job.record.topic, "completed")] = 1
            flush_stats(tr, layout, stats)

        try:
            self.db.transact(body)
        except _NotDone as not_done:
            self._submit(running, not_done.outcome)
            return
        except _Stale:
            done = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE)
            self._finish(running, done, applied=False)
            return
        except Exception as error:  # noqa: BLE001 - a commit error is a failed attempt
            outcome = to_outcome(running, error, self._now(), settings, self.rng)
            self._submit(running, outcome)
            return
        finally:
            running.meta.tr = None
        with self._lock:
            running.outcome_kind = "done"
        self._finish(running, Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE),
                     applied=True)

    # -- settling ---------------------------------------------------------------------------
    def _submit(self, running: Running, outcome: Outcome) -> None:
        with self._lock:
            if running.outcome_kind:
                return  # the first outcome wins: a timeout or release went out before this one
            running.outcome_kind = outcome.kind
        with self._settle_wake:
            self._outcomes.append((running, outcome))
            self._settle_wake.notify()

    def _settle_loop(self) -> None:
        settings = self.settings
        while True:
            with self._settle_wake:
                while not self._outcomes:
                    if self._closed_workers:
                        return
                    self._settle_wake.wait(0.5)  # woken by every outcome and at shutdown
                batch = self._outcomes[: settings.completion_batch]
                del self._outcomes[: settings.completion_batch]
            outcomes = [o for _, o in batch]
            try:
                applied = self.db.transact(
                    settle_many, self.context.layout, outcomes, to_us(self._now()),
                    to_us(settings.pointer_slack), settings.max_snoozes,
                )
            except Exception:
                log.exception("could not settle %d outcomes; their leases will expire",
                              len(batch))
                applied = [False] * len(batch)
            for (running, outcome), ok in zip(batch, applied, strict=True):
                self._finish(running, outcome, applied=ok)

    def _finish(self, running: Running, outcome: Outcome, *, applied: bool) -> None:
        job = running.job
        with self._lock:
            running.settled = True
            self._inflight.pop((job.tenant, job.record.job_id), None)
            self._lock.notify()  # a free slot: wake the scanner if it waits for one
        if not applied:
            self.counters.add("stale")
            log.warning("stale %s for %s/%s: the lease was lost; nothing changed",
                        outcome.kind, job.tenant, job.record.job_id)
            return
        kind: str = outcome.kind
        if kind == "done":
            self.counters.add("completed")
        elif kind == "retry":
            self.counters.add("failed")
            if job.record.attempt > job.record.max_retries:
                self.counters.add("dead")
            else:
                self.counters.add("retried")
        elif kind == "snooze":
            self.counters.add("snoozed")
        elif kind == "discard":
            self.counters.add("discarded")
            self.counters.add("dead")
        elif kind == "dead":
            self.counters.add("dead")
        elif kind == "release":
            self.counters.add("released")
        if log.isEnabledFor(logging.INFO):
            detail = f": {outcome.reason}" if outcome.reason else ""
            if kind == "retry" and job.record.attempt > job.record.max_retries:
                kind = "dead"  # the last attempt failed: logged as what happened to the job
            log.info("%s %s %s/%s%s", kind, job.record.topic, job.tenant, job.record.job_id,
                     detail)

    # -- leases and timeouts ----------------------------------------------------------------
    def _keeper_loop(self) -> None:
        settings = self.settings
        next_extend = self._now() + settings.extend_interval
        while not self._closed_workers:
            # Tick fast only while some running job has a timeout to enforce; an idle
            # consumer then costs next to no CPU.
            with self._lock:
                watching = any(r.deadline is not None for r in self._inflight.values())
            # (never slower than extend_interval: a short item_lease would expire between ticks)
            self._keeper_wake.wait(0.05 if watching else min(0.5, settings.extend_interval))
            if not self._closed_workers:
                self._keeper_wake.clear()
            with self._lock:
                timed_out = [
                    r for r in self._inflight.values()
                    if r.deadline is not None and not r.abandoned and r.started
                    and self._now() > r.deadline and not r.outcome_kind
                ]
            for running in timed_out:
                self._time_out(running)
            now = self._now()
            if now >= next_extend:
                next_extend = now + settings.extend_interval
                self._extend_all()

    def _time_out(self, running: Running) -> None:
        with self._lock:
            running.abandoned = True
        running.meta.lease_lost.set()
        self._submit(running, timeout_outcome(running, self._now(), self.settings, self.rng))
        self._spawn_worker()  # the stuck thread retires when (if) its handler returns

    def _extend_all(self) -> None:
        with self._lock:
            entries = [r for r in self._inflight.values() if not r.settled]
        settings = self.settings
        for start in range(0, len(entries), 500):
            chunk = entries[start : start + 500]
            leases = [(r.job.tenant, r.job.record.job_id, r.job.token) for r in chunk]
            now = to_us(self._now())
            try:
                kept = self.db.transact(
                    extend_leases, self.context.layout, leases, now, to_us(settings.item_lease),
                )
            except Exception:
                log.exception("lease extension failed")
                continue
            expiry = now + to_us(settings.item_lease)
            for running, ok in zip(chunk, kept, strict=True):
                if ok:
                    running.job.record.at = max(running.job.record.at, expiry)
                elif not running.settled:
                    running.meta.lease_lost.set()
                    self.counters.add("leases_lost")

    # -- shutdown ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        settings = self.settings
        # Jobs dequeued but not started go back at once, with no attempt spent.
        waiting = []
        while True:
            try:
                item = self._local.get_nowait()
            except Empty:
                break
            if item is not None:
                waiting.append(item)
        for running in waiting:
            running.abandoned = True
            job = running.job
            release = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.RELEASE)
            self._submit(running, release)
        grace_end = time.monotonic() + (0 if self.until_idle else settings.shutdown_grace)
        with self._lock:
            while self._running > 0 and time.monotonic() < grace_end:
                self._lock.wait(min(0.05, max(0.0, grace_end - time.monotonic())))
            if self.until_idle:
                # drain() waits for running handlers, but not past its own timeout.
                while self._running > 0 and (
                    self._deadline is None or time.monotonic() < self._deadline
                ):
                    self._lock.wait(0.05)
            overdue = [r for r in self._inflight.values()
                       if r.started and not r.outcome_kind and not r.settled]
        for running in overdue:
            running.abandoned = True
            running.meta.lease_lost.set()
            job = running.job
            release = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.RELEASE)
            self._submit(running, release)
        # Let the settler flush everything, then stop the threads.
        flush_end = time.monotonic() + 30
        while time.monotonic() < flush_end:
            with self._settle_wake:
                pending = bool(self._outcomes)
            with self._lock:
                unsettled = [r for r in self._inflight.values() if r.outcome_kind]
            if not pending and not unsettled:
                break
            time.sleep(0.002)
        with self._lock:
            self._closed_workers = True
            self._keeper_wake.set()
            workers = self._workers
        for _ in range(workers):
            self._local.put(None)
        with self._settle_wake:
            self._settle_wake.notify_all()
        for thread in self._threads:
            if thread.name != "quick_queue-worker":
                thread.join(timeout=5)
