"""Prometheus metrics (the optional ``web`` extra: ``pip install "quick-queue-zones[web]"``).

Two kinds, served from two places:

- **Process metrics** (``WorkerMetrics``): a subscriber of a queue's event stream
  (``quick_queue.events``) in every worker process: jobs by topic and event, handler run time,
  pick-up latency (due to started), lost leases, and, read from the process's running consumers
  at scrape time, jobs in flight, lease extensions and the scanner's counters (zone visits,
  lease races), and the store's retries by error code (``quick_queue_store_retries_total``,
  from ``quick_queue.kv.retries``: 1020 is a conflict). Serve
  them with ``quick-queue worker --metrics-port N``, ``serve(port)``, or mount them in an app
  that already serves HTTP with ``mount(app)`` / ``asgi_app()`` / ``wsgi_app()``.
- **Queue metrics** (``QueueCollector``): what the store holds (ready, scheduled, leased, dead,
  zones with work, oldest due job's age, per-topic totals, live workers), read through the read
  model at scrape time. They cost store reads, so one process serves them: the dashboard
  server (``quick-queue dashboard``), not every worker.

Labels are the queue and the topic, never the tenant: tenants are unbounded, a time series per
tenant would grow the scraper's memory without limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    make_asgi_app,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quick_queue.consumer.heartbeat import LIVE
from quick_queue.context import QueueContext
from quick_queue.events import EventKind, EventStream, JobEvent
from quick_queue.kv import retries as kv_retries
from quick_queue.models import QueueStats

#: seconds: handler run times from a millisecond to ten minutes
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
#: seconds: pick-up latency from a millisecond to an hour
PICKUP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
#: the scanner's own counters exported per process (``Consumer.counters``)
SCANNER_COUNTERS = ("zone_visits", "lease_races", "zone_not_due", "zone_errors",
                    "unknown_results")


class _ConsumerCollector(Collector):
    """In-flight jobs and scanner counters of the consumers running in this process, read at
    scrape time (nothing to keep in step)."""

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("quick_queue_jobs_in_flight",
                                      "Jobs leased by this process's consumers (running or "
                                      "prefetched)", labels=["queue"])
        running = GaugeMetricFamily("quick_queue_handlers_running",
                                    "Handler calls in progress in this process",
                                    labels=["queue"])
        scanner = CounterMetricFamily("quick_queue_scanner",
                                      "Scanner events of this process's running consumers "
                                      "(lease_races: zone leases lost to another consumer)",
                                      labels=["queue", "counter"])
        extensions = CounterMetricFamily("quick_queue_lease_extensions",
                                         "Job leases this process's running consumers "
                                         "extended (one per lease per round)",
                                         labels=["queue"])
        per_queue: dict[str, list[int]] = {}
        counts: dict[tuple[str, str], int] = {}
        for consumer in LIVE.snapshot():
            name = consumer.context.name
            with consumer.inflight.cond:
                held, busy = len(consumer.inflight.entries), consumer.inflight.running
            sums = per_queue.setdefault(name, [0, 0, 0])
            sums[0] += held
            sums[1] += busy
            keeper = getattr(consumer, "keeper", None)  # a Consumer's (Beating omits it)
            sums[2] += keeper.extended if keeper is not None else 0
            snapshot = consumer.counters.snapshot()
            for counter in SCANNER_COUNTERS:
                counts[(name, counter)] = counts.get((name, counter), 0) + snapshot.get(counter, 0)
        for name, (held, busy, extended) in sorted(per_queue.items()):
            in_flight.add_metric([name], held)
            running.add_metric([name], busy)
            extensions.add_metric([name], extended)
        for (name, counter), value in sorted(counts.items()):
            scanner.add_metric([name, counter], value)
        yield in_flight
        yield running
        yield scanner
        yield extensions


class _StoreRetryCollector(Collector):
    """The store's retries in this process (every ``transact`` / ``@transactional`` run again
    after a retryable error), by FoundationDB error code, read from ``kv.retries.counter()``
    at scrape time. Conflicts are code 1020 (not_committed)."""

    def __init__(self) -> None:
        self.counter = kv_retries.counter()  # counting starts here, not at import

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("quick_queue_store_retries",
                                     "Store transactions this process ran again, by "
                                     "FoundationDB error code (1020 not_committed: conflicts)",
                                     labels=["code", "name"])
        for code, count in sorted(self.counter.snapshot().items()):
            family.add_metric([str(code), kv_retries.name_of(code)], count)
        yield family


class WorkerMetrics:
    """Process metrics in ``registry`` (a fresh one by default). ``attach(context)`` subscribes
    to a queue's event stream; ``detach()`` stops."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs = Counter("quick_queue_job_events", "Job events by queue, topic and event "
                            "(started, completed, retried, snoozed, discarded, dead, released, "
                            "lease_lost, cancelled, stale)", ["queue", "topic", "event"],
                            registry=self.registry)
        self.run_time = Histogram("quick_queue_job_run_seconds", "Handler run time by outcome "
                                  "event", ["queue", "topic", "event"], buckets=RUN_BUCKETS,
                                  registry=self.registry)
        self.pickup = Histogram("quick_queue_job_pickup_latency_seconds", "Seconds from when a "
                                "job became due to when its handler started", ["queue", "topic"],
                                buckets=PICKUP_BUCKETS, registry=self.registry)
        self.registry.register(_ConsumerCollector())
        self.registry.register(_StoreRetryCollector())
        self._subscriptions: list[tuple[EventStream, Callable[[JobEvent], None]]] = []

    def attach(self, context: QueueContext) -> None:
        name = context.name

        def on_event(event: JobEvent) -> None:
            self.observe(name, event)

        context.events.subscribe(on_event)
        self._subscriptions.append((context.events, on_event))

    def detach(self) -> None:
        for stream, subscriber in self._subscriptions:
            stream.unsubscribe(subscriber)
        self._subscriptions.clear()

    def observe(self, queue: str, event: JobEvent) -> None:
        self.jobs.labels(queue, event.topic, event.kind.value).inc()
        if event.kind is EventKind.STARTED:
            if event.waited is not None:
                self.pickup.labels(queue, event.topic).observe(event.waited)
        elif event.kind is not EventKind.LEASE_LOST and event.duration is not None:
            self.run_time.labels(queue, event.topic, event.kind.value).observe(event.duration)


def count_in_child(context: QueueContext) -> None:
    """``worker -p N --metrics-port``'s set-up in a spawned child (``in_each_child``): count
    this child's job events into the multiprocess folder the supervisor serves (the folder is
    named by ``PROMETHEUS_MULTIPROC_DIR``, which the child inherits)."""
    WorkerMetrics().attach(context)


class QueueCollector(Collector):
    """Queue-level gauges from the store. ``read()`` returns the ``QueueStats`` and the number
    of live workers (the dashboard passes its cached snapshot, so a scrape costs no extra
    reads)."""

    def __init__(self, queue: str, read: Callable[[], tuple[QueueStats, int]]) -> None:
        self.queue = queue
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats, workers = self.read()
        gauges: Iterable[tuple[str, str, float | None]] = (
            ("ready", "Jobs ready to run", stats.ready),
            ("scheduled", "Jobs scheduled for later", stats.scheduled),
            ("leased", "Jobs leased by a worker", stats.leased),
            ("dead", "Dead letters", stats.dead),
            ("zones", "Zones (tenants) with work", stats.zones),
            ("due_zones", "Zones with a job due and not running", stats.due_zones),
            ("oldest_due_age_seconds", "How long the longest-waiting due job has waited",
             stats.oldest_due_age or 0.0),
            ("live_workers", "Workers whose heartbeat has not lapsed", workers),
        )
        for name, help_text, value in gauges:
            family = GaugeMetricFamily(f"quick_queue_queue_{name}", help_text, labels=["queue"])
            family.add_metric([self.queue], float(value or 0))
            yield family
        totals = CounterMetricFamily("quick_queue_store_jobs", "Per-topic counters kept in the "
                                     "store since the queue began (all workers)",
                                     labels=["queue", "topic", "counter"])
        for topic, counters in sorted(stats.topics.items()):
            for counter, value in sorted(counters.items()):
                totals.add_metric([self.queue, topic, counter], value)
        yield totals


# -- serving -----------------------------------------------------------------------------------
def serve(port: int, registry: CollectorRegistry, host: str = "127.0.0.1") -> Any:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread; returns the
    server (``.shutdown()`` stops it)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def multiprocess_registry() -> CollectorRegistry:
    """The sum of every process's counters and histograms, in prometheus_client's
    multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before the metrics were made)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def asgi_app(registry: CollectorRegistry) -> Any:
    """An ASGI app serving ``registry`` (mount it in Starlette/FastAPI)."""
    return make_asgi_app(registry=registry)


def wsgi_app(registry: CollectorRegistry) -> Any:
    """A WSGI app serving ``registry`` (mount it in Flask/Django with a dispatcher)."""
    return make_wsgi_app(registry=registry)


def mount(app: Any, registry: CollectorRegistry, path: str = "/metrics") -> None:
    """Mount the metrics of ``registry`` at ``path`` in an ASGI app that has ``mount``
    (Starlette, FastAPI)."""
    app.mount(path, asgi_app(registry))
