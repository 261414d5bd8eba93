"""The consumer runtime of one process: starts a scanner, worker threads, a settler and a lease
keeper around one in-flight table, and shuts them down.

::

    scanner ──lease zone, dequeue──▶ in-flight table ──▶ workers ──outcome──▶ settler ──▶ store
      (scanner.py)                      (inflight.py)    (workers.py,        (settler.py: one
                                              ▲           transactional.py,   txn per batch)
                                              │           aio.py: the event
                                              │           loop of async
                                              │           handlers)
    keeper: extends every in-flight lease ────┘  sets meta.lease_lost, enforces timeouts
      (keeper.py)                                 (one txn per 500 leases)

Every state change of a job is an event (``quick_queue.events``): the ``Summary`` of a run
and the worker log are subscribers. Capacity is ``concurrency`` running jobs plus as many
prefetched ones (three times as many while handlers take under 2 ms, see
``InFlight._prefetch``), so the scanner fetches the next batch while the current one runs.
"""

from __future__ import annotations

import threading
import time

from quick_queue.consumer.heartbeat import Heartbeat
from quick_queue.consumer.inflight import InFlight
from quick_queue.consumer.keeper import Keeper
from quick_queue.consumer.scanner import Scanner
from quick_queue.consumer.settler import Settler
from quick_queue.consumer.transactional import TRANSACTIONAL_RETRY_LIMIT
from quick_queue.consumer.workers import WorkerPool, release_outcome
from quick_queue.context import QueueContext
from quick_queue.events import EventCounter, EventStream, Summary, WorkerLog
from quick_queue.telemetry import Counters

__all__ = ["TRANSACTIONAL_RETRY_LIMIT", "Consumer", "Summary"]
FLUSH_LIMIT = 30.0  # seconds shutdown waits for the settler to write the last outcomes


class Consumer:
    def __init__(
        self, context: QueueContext, concurrency: int, *, until_idle: bool = False,
        prefetch: int | None = None,
    ) -> None:
        self.context = context
        self.until_idle = until_idle
        self.inflight = InFlight(concurrency, prefetch)
        self.counters = Counters()  # the scanner's own counters, and every event's
        # this consumer's stream: counted here, then passed on to the queue's subscribers
        self.events = EventStream(parent=context.events)
        self.events.subscribe(EventCounter(self.counters))
        self.events.subscribe(WorkerLog())  # the worker log: one line per state change
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self.settler = Settler(context, self.inflight, self.events)
        self.pool = WorkerPool(context, self.inflight, self.settler, self.events,
                               threading.Event())
        self.keeper = Keeper(context, self.inflight, self.settler, self.events,
                             on_overrun=self.pool.shed_prefetched)
        self.pool.keeper_wake = self.keeper.wake
        self.scanner = Scanner(context, self.inflight, self.counters, self._stopping,
                               run=self.pool.accept_many, settle=self.settler.submit)
        self._threads: list[threading.Thread] = []
        self.heartbeat: Heartbeat | None = None  # live-worker record (run() only)

    # -- public -----------------------------------------------------------------------------
    def run(self, timeout: float | None = None) -> Summary:
        """Consume until ``stop()`` (or, with ``until_idle``, until no due work is left)."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        self._deadline = deadline
        self._start_threads()
        timed_out = False
        try:
            timed_out = self.scanner.loop(deadline, self.until_idle)
        finally:
            self._shutdown()
        summary = self.summary()
        summary.timed_out = timed_out
        return summary

    def stop(self) -> None:
        self._stopping.set()
        with self.inflight.cond:
            self.inflight.cond.notify_all()

    def summary(self) -> Summary:
        return Summary.of(self.counters.snapshot())

    # -- threads ----------------------------------------------------------------------------
    def _start_threads(self) -> None:
        self.pool.start()
        if not self.until_idle:
            self.heartbeat = Heartbeat(self)
            self.scanner.peers.worker_id = self.heartbeat.worker_id
            self.heartbeat.start()
        for target, name in ((self.settler.loop, "settler"), (self.keeper.loop, "keeper")):
            thread = threading.Thread(target=target, name=f"quick_queue-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- shutdown ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        # Jobs dequeued but not started go back at once, with no attempt spent.
        for running in self.pool.take_queued():
            with self.inflight.cond:
                running.abandoned = True
            self.settler.submit(running, release_outcome(running))
        self._wait_for_handlers()
        with self.inflight.cond:
            overdue = [r for r in self.inflight.entries.values()
                       if r.started and r.outcome_kind is None and not r.settled]
            for running in overdue:
                running.abandoned = True
        for running in overdue:  # still running after the grace period: handed back
            running.meta.lease_lost.set()
            self.settler.submit(running, release_outcome(running))
        self._flush()
        self.keeper.close()
        self.pool.close()
        self.settler.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.heartbeat is not None:
            self.heartbeat.stop()

    def _wait_for_handlers(self) -> None:
        """Running handlers get ``shutdown_grace`` seconds (``drain()``: until its timeout)."""
        grace = 0 if self.until_idle else self.context.settings.shutdown_grace
        grace_end = time.monotonic() + grace
        with self.inflight.cond:
            self.inflight.handler_waiters += 1  # the workers notify when their handlers end
            try:
                while self._handlers_busy() and time.monotonic() < grace_end:
                    self.inflight.cond.wait(min(0.05, max(0.0, grace_end - time.monotonic())))
                if self.until_idle:
                    while self.inflight.running and (
                        self._deadline is None or time.monotonic() < self._deadline
                    ):
                        self.inflight.cond.wait(0.05)
            finally:
                self.inflight.handler_waiters -= 1

    def _handlers_busy(self) -> bool:
        # Handlers whose job is already settled (timed out, overrunning) are not waited for:
        # their outcome went out; the thread is a daemon.
        return self.inflight.running > len(self.inflight.overrunning)

    def _flush(self) -> None:
        """Let the settler write every outcome submitted so far."""
        flush_end = time.monotonic() + FLUSH_LIMIT
        while time.monotonic() < flush_end:
            with self.inflight.cond:
                unsettled = any(r.outcome_kind for r in self.inflight.entries.values())
            if not self.settler.pending() and not unsettled:
                return
            time.sleep(0.002)
