"""The worker pool: ``concurrency`` threads that take leased jobs from a local queue and run
their handlers, handing each outcome to the settler.

The pool never grows: a handler that overruns its timeout keeps its thread (see
``inflight``), so the threads a consumer starts are bounded by its concurrency whatever its
handlers do. Jobs prefetched for workers that overrunning handlers now hold are handed back.

Async handlers (``async def perform``, see ``aio``): a worker begins the run and hands it to
the consumer's event loop, then takes the next job. Running handlers are then bounded by
slots, not threads: with any async handler registered, a worker takes a slot (of
``concurrency``) before it takes a job, and the slot is given back when the handler ends, on
its thread or on the loop. A queue with only plain handlers has no slots and no loop: the
threads bound it as before, at no added cost.
"""

from __future__ import annotations

import logging
import threading
import time
from queue import Empty, SimpleQueue

from quick_queue.consumer.aio import AsyncRunner
from quick_queue.consumer.executor import call_handler, to_outcome
from quick_queue.consumer.inflight import InFlight, JobKey, Running
from quick_queue.consumer.keeper import store_time_or_none
from quick_queue.consumer.settler import Settler
from quick_queue.consumer.transactional import run_transactional
from quick_queue.context import QueueContext
from quick_queue.events import EventKind, EventStream, JobEvent
from quick_queue.outcomes import Outcome, OutcomeKind
from quick_queue.progress import ProgressWriter

log = logging.getLogger("quick_queue.worker")
THREAD_NAME = "quick_queue-worker"
# (an enum member read through its class costs ~0.1 µs more than a global's, once a job)
_STARTED = EventKind.STARTED


def release_outcome(running: Running) -> Outcome:
    job = running.job
    return Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.RELEASE)


class WorkerPool:
    def __init__(
        self, context: QueueContext, inflight: InFlight, settler: Settler, events: EventStream,
        keeper_wake: threading.Event,
    ) -> None:
        self.context = context
        self.inflight = inflight
        self.settler = settler
        self.events = events
        self.keeper_wake = keeper_wake  # set when a job with a timeout starts
        # dequeued, waiting for a worker; None tells a worker to exit
        self._local: SimpleQueue[Running | None] = SimpleQueue()
        # a retry leased while its previous attempt still runs here waits for it
        self._waiting_for: dict[JobKey, Running] = {}
        self.threads: list[threading.Thread] = []
        self.aio: AsyncRunner | None = None  # the event loop, when async handlers exist
        self._slots: threading.Semaphore | None = None  # running handlers, when aio is on
        self._closed = False
        # meta.progress() of a started job writes through this (only while its lease holds)
        self._progress = ProgressWriter(context.db, context.layout)

    def start(self) -> None:
        registry = self.context.registry
        if any(spec.is_async for t in registry.topics() if (spec := registry.get(t))):
            self._slots = threading.BoundedSemaphore(self.inflight.concurrency)
            self.aio = AsyncRunner(self.context, self.settler, self._end_async)
            self.aio.start()
        for _ in range(self.inflight.concurrency):
            thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
            thread.start()
            self.threads.append(thread)

    def accept(self, running: Running) -> None:
        """Queue a leased job (already in the in-flight table) for a worker."""
        self.accept_many([running])

    def accept_many(self, runs: list[Running]) -> None:
        """``accept`` for each of ``runs`` (a zone visit's jobs), under one lock."""
        with self.inflight.lock:
            overrunning = self.inflight.overrunning
            if overrunning:  # (rare: only while a handler overruns its timeout)
                ready = []
                for running in runs:
                    if running.key in overrunning:
                        self._waiting_for[running.key] = running
                    else:
                        ready.append(running)
                runs = ready
        put = self._local.put
        for running in runs:
            put(running)

    def take_queued(self) -> list[Running]:
        """Remove and return every job still waiting for a worker."""
        waiting = []
        while True:
            try:
                item = self._local.get_nowait()
            except Empty:
                break
            if item is not None:
                waiting.append(item)
        with self.inflight.cond:
            waiting.extend(self._waiting_for.values())
            self._waiting_for.clear()
        return waiting

    def shed_prefetched(self) -> None:
        """Overrunning handlers hold every worker: hand back the jobs prefetched for them, so
        they do not sit leased here while other consumers could run them."""
        with self.inflight.cond:
            if self.inflight.workers_left() > 0:
                return
        for running in self.take_queued():
            with self.inflight.cond:
                running.abandoned = True
            self.settler.submit(running, release_outcome(running))

    def close(self) -> None:
        self._closed = True
        for _ in self.threads:
            self._local.put(None)
        if self.aio is not None:
            self.aio.close()

    # -- one worker ---------------------------------------------------------------------------
    def _loop(self) -> None:
        if self._slots is not None:
            self._slotted_loop(self._slots)
            return
        while True:
            running = self._local.get()
            if running is None:
                return
            if not self._begin(running):
                continue
            outcome = None
            try:
                outcome = self._execute(running)
            finally:
                self._end(running, outcome)

    def _slotted_loop(self, slots: threading.Semaphore) -> None:
        """``_loop`` when async handlers exist: a slot before a job, and async runs handed
        to the loop (which gives the slot back when the task ends)."""
        aio = self.aio
        assert aio is not None
        while True:
            while not slots.acquire(timeout=0.5):
                if self._closed:
                    return
            running = self._local.get()
            if running is None or not self._begin(running):
                slots.release()
                if running is None:
                    return
                continue
            spec = running.spec
            assert spec is not None
            if spec.is_async:
                aio.submit(running)
                continue
            outcome = None
            try:
                outcome = self._execute(running)
            finally:
                self._end(running, outcome)
                slots.release()

    def _end_async(self, running: Running) -> None:
        try:
            self._end(running)
        finally:
            assert self._slots is not None
            self._slots.release()

    def _begin(self, running: Running) -> bool:
        store_now = store_time_or_none(self.context)  # (read outside the lock: it may do I/O)
        if store_now is not None and store_now * 1e6 >= running.job.record.at:
            # The lease ran out before the job started (this process was stopped or starved
            # between dequeue and start): another consumer may already run it. Starting it now
            # would run it twice at once; hand it back instead (stale if it was taken).
            return self._expired_before_start(running)
        with self.inflight.lock:
            if running.abandoned:
                return False
            self.inflight.running += 1
            spec = running.spec
            assert spec is not None
            running.started = store_now if store_now is not None else time.time()
            running.started_mono = time.monotonic()
            if spec.timeout is not None:
                # Timed on the monotonic clock (and the store's, which tests move): a step of
                # this host's wall clock neither fires a timeout early nor holds it off.
                running.deadline = running.started_mono + spec.timeout
                if store_now is not None:
                    running.store_deadline = store_now + spec.timeout
                self.keeper_wake.set()  # the keeper now watches at its fast tick
        # (JobMeta.bind_progress's two assignments, without the call: once a job)
        meta = running.meta
        meta._progress_sink, meta._token = self._progress, running.job.token
        if self.events.wants(_STARTED):  # (built only for someone who reads it)
            record = running.job.record
            self.events.emit(JobEvent(_STARTED, running.job.tenant, record.topic,
                                      record.job_id, record.attempt, None, None, "", (),
                                      max(0.0, running.started - record.seq / 1e6),
                                      record.trace))
        return True

    def _expired_before_start(self, running: Running) -> bool:
        with self.inflight.cond:
            if running.abandoned:
                return False
            running.abandoned = True
        log.warning("%s: its lease ran out before it started; handed back unrun",
                    running.where)
        self.settler.submit(running, release_outcome(running))
        return False

    def _end(self, running: Running, outcome: Outcome | None = None) -> None:
        """The handler call of ``running`` is over; ``outcome``: what it came to, claimed and
        handed to the settler here, under the same lock (one lock a job instead of two)."""
        ended = time.monotonic()
        inflight = self.inflight
        with inflight.lock:
            claimed = outcome is not None and inflight.claim_outcome(running, outcome.kind)
            inflight.running -= 1
            inflight.note_handler(ended - running.started_mono)
            # (both maps are empty but while a handler overruns its timeout: no lookups then)
            overran = bool(inflight.overrunning) and (
                inflight.overrunning.pop(running.key, None) is not None)
            retry = self._waiting_for.pop(running.key, None) if self._waiting_for else None
            if overran or (inflight.handler_waiters
                           and inflight.running <= len(inflight.overrunning)):
                # a worker held past its timeout is back (the scanner may lease again), or
                # no handler runs any more (a shutdown or a drain waits for that)
                self.inflight.cond.notify_all()
        if claimed:
            assert outcome is not None
            self.settler.submit_claimed(running, outcome)
        if overran:
            log.warning("%s: the handler returned %.1f s after it started, past its "
                        "timeout; its worker is free again", running.where,
                        time.monotonic() - running.started_mono)
        if retry is not None:
            self._local.put(retry)  # its previous attempt is over: it may start now

    def _execute(self, running: Running) -> Outcome | None:
        """Run the job; its outcome, for ``_end`` to submit (None: submitted already)."""
        spec = running.spec
        assert spec is not None
        context = self.context
        if spec.transactional:
            run_transactional(context, running, self.settler)
            return None
        result = call_handler(running)
        # the store's time is read only by an outcome that needs it (a retry, a snooze)
        return to_outcome(running, result, context.db.store_time, context.settings, context.rng)
