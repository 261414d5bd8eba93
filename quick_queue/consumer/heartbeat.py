"""A running consumer's heartbeat: its live-worker record in the store (``core.workers``), and
its entry in this process's table of live consumers (read by ``quick_queue.metrics`` for the
in-flight gauge and the scanner's lease races).

The heartbeat registers the worker when it starts, rewrites the record every ``interval``
seconds (host, pid, concurrency, the jobs it holds) and clears it when the consumer stops.
Beats are relaxed commits (not synced on the embedded engine; see ``_bounded``). A
worker killed outright leaves its record behind until it lapses (``LAPSE_BEATS`` missed beats);
readers ignore it from then on. A failing heartbeat is logged once and never disturbs the
consumer: it costs visibility, not jobs.

Only ``run()`` consumers beat: ``drain()`` is a batch, not a worker an operator watches.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from quick_queue.consumer.inflight import InFlight
from quick_queue.context import QueueContext
from quick_queue.core.workers import MAX_LISTED_JOBS, WorkerInfo, beat, unregister
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import is_transient
from quick_queue.telemetry import Counters

log = logging.getLogger("quick_queue.worker")

HEARTBEAT_INTERVAL = 5.0  # seconds between beats
LAPSE_BEATS = 3  # a record lapses after this many intervals without a beat
TIMEOUT_MS = 2000  # a heartbeat transaction gives up after this long


class Beating(Protocol):
    """What the heartbeat reads of a consumer."""

    context: QueueContext
    inflight: InFlight
    counters: Counters


class LiveConsumers:
    """The consumers running in this process (metrics read them at scrape time). Weak, so a
    consumer that was never stopped does not live forever; locked, so a scrape never meets a
    set that changes under it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consumers: weakref.WeakSet[Beating] = weakref.WeakSet()

    def add(self, consumer: Beating) -> None:
        with self._lock:
            self._consumers.add(consumer)

    def discard(self, consumer: Beating) -> None:
        with self._lock:
            self._consumers.discard(consumer)

    def snapshot(self) -> list[Beating]:
        with self._lock:
            return list(self._consumers)


LIVE = LiveConsumers()


class Heartbeat:
    def __init__(self, consumer: Beating, *, interval: float = HEARTBEAT_INTERVAL,
                 host: str | None = None, pid: int | None = None) -> None:
        self.consumer = consumer
        self.interval = interval
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.worker_id = f"{self.host}-{self.pid}-{consumer.context.new_token()[:8]}"
        self.started: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        # Beats one at a time: a beat reads the jobs held, then commits; the first one (the
        # registration, in the heartbeat's thread) may still be under way when the consumer
        # or a test beats, and landing after it would put back the older list of jobs.
        self._beating = threading.Lock()

    def info(self, now: float) -> WorkerInfo:
        inflight = self.consumer.inflight
        with inflight.cond:
            keys = list(inflight.entries)
        return WorkerInfo(
            self.worker_id, self.host, self.pid, self.started or now, now,
            now + self.interval * LAPSE_BEATS, inflight.concurrency, len(keys),
            [(tenant, job_id) for tenant, job_id in keys[:MAX_LISTED_JOBS]],
        )

    def beat(self) -> None:
        """Write the record now (also the first registration)."""
        with self._beating:
            self._beat()

    def _beat(self) -> None:
        context = self.consumer.context
        try:
            now = context.db.store_time()
            if self.started is None:
                self.started = now
            context.db.transact(_bounded(beat, relaxed=True), context.name, self.info(now), now)
        except Exception as error:  # noqa: BLE001 - visibility only: never stop the consumer
            # A store that fails (disk full, cluster away) is reported by the scanner and the
            # settler; the heartbeat only notes it, and a fault of its own once as a warning.
            if is_transient(error):
                log.debug("worker heartbeat failed: %s", error)
            elif not self._warned:
                self._warned = True
                log.warning("worker heartbeat failed (shown once): %s", error)

    def start(self) -> None:
        LIVE.add(self.consumer)
        self._thread = threading.Thread(target=self._loop, name="quick_queue-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.beat()  # registered at once, off the consumer's own start
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        LIVE.discard(self.consumer)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        context = self.consumer.context
        try:
            context.db.transact(_bounded(unregister), context.name, self.worker_id)
        except Exception as error:  # noqa: BLE001 - the record lapses by itself
            log.debug("could not clear the worker record %s: %s", self.worker_id, error)


def _bounded(fn: Callable[..., object], *, relaxed: bool = False) -> Callable[..., None]:
    """``fn`` in a transaction that gives up after ``TIMEOUT_MS``: an unreachable store must
    not hold up a consumer's shutdown for a record that lapses by itself anyway.

    ``relaxed``: the commit need not be synced (a beat). A beat lost to a power loss is a
    record that lapses, as it would anyway with its worker gone; and a durable beat held the
    embedded store's write turn through an fsync: measured (issue 10, pick-up latency), 1-12 ms
    a beat, during which an enqueue that commits waits; relaxed, 0.67 ms p50 against 3.2
    (interleaved, 60 beats each, on a busy machine)."""

    def run(tr: Transaction, *args: Any) -> None:
        tr.options.set_timeout(TIMEOUT_MS)
        if relaxed:
            tr.options.set_relaxed_durability()
        fn(tr, *args)

    return run
