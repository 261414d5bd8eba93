"""Prometheus metrics from the event stream (process) and from the store (queue)."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from tests.conftest import QueueFactory

pytest.importorskip("prometheus_client", reason="metrics need the web extra: pip install -e .[web]")

from prometheus_client import CollectorRegistry, generate_latest

from quick_queue import read_model
from quick_queue.metrics import QueueCollector, WorkerMetrics


@qq.job(topic="m:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@qq.job(topic="m:fail", max_retries=0)
class Fail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("no")


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_jobs_by_topic_and_event_run_time_and_pickup_latency(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Ok, Fail)
    metrics = WorkerMetrics()
    metrics.attach(queue.context)
    for n in range(3):
        queue.enqueue(f"t{n}", "m:ok", {})
    queue.enqueue("t0", "m:fail", {})
    clock.advance(7)  # the jobs have waited 7 s when a worker picks them up
    assert queue.drain(concurrency=2, timeout=10).completed == 3
    reg = metrics.registry
    q = {"queue": "default"}
    assert _value(reg, "quick_queue_job_events_total", **q, topic="m:ok", event="started") == 3
    assert _value(reg, "quick_queue_job_events_total", **q, topic="m:ok", event="completed") == 3
    assert _value(reg, "quick_queue_job_events_total", **q, topic="m:fail", event="dead") == 1
    assert _value(reg, "quick_queue_job_run_seconds_count", **q, topic="m:ok",
                  event="completed") == 3
    assert _value(reg, "quick_queue_job_pickup_latency_seconds_count", **q, topic="m:ok") == 3
    # every pick-up waited the 7 s the clock moved: none falls in the buckets below 5 s
    assert _value(reg, "quick_queue_job_pickup_latency_seconds_bucket", **q, topic="m:ok",
                  le="5.0") == 0
    assert _value(reg, "quick_queue_job_pickup_latency_seconds_bucket", **q, topic="m:ok",
                  le="10.0") == 3
    metrics.detach()
    queue.enqueue("t9", "m:ok", {})
    queue.drain(timeout=10)
    assert _value(reg, "quick_queue_job_events_total", **q, topic="m:ok", event="completed") == 3


def test_in_flight_and_scanner_counters_of_a_running_worker(
    make_queue: QueueFactory, background: Any, wait_until: Any
) -> None:
    import threading

    release = threading.Event()

    @qq.job(topic="m:hold")
    class Hold:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            release.wait(10)

    queue = make_queue(Hold)
    metrics = WorkerMetrics()
    metrics.attach(queue.context)
    queue.enqueue("a", "m:hold", {})
    run = background(queue.run, concurrency=2, log=False)
    reg = metrics.registry
    wait_until(lambda: _value(reg, "quick_queue_handlers_running", queue="default") == 1,
               what="the handler to run")
    assert _value(reg, "quick_queue_jobs_in_flight", queue="default") == 1
    assert _value(reg, "quick_queue_scanner_total", queue="default", counter="zone_visits") >= 1
    release.set()
    queue.stop()
    run.result()
    # a stopped consumer is no longer counted
    assert reg.get_sample_value("quick_queue_jobs_in_flight", {"queue": "default"}) is None


def test_queue_gauges_come_from_the_store(make_queue: QueueFactory, clock: qq.ManualClock
                                          ) -> None:
    queue = make_queue(Ok)
    queue.enqueue("a", "m:ok", {})
    queue.enqueue("b", "m:ok", {}, in_=60)
    registry = CollectorRegistry()
    registry.register(QueueCollector("default", lambda: (read_model.queue_stats(queue), 0)))
    clock.advance(2)
    text = generate_latest(registry).decode()
    assert 'quick_queue_queue_ready{queue="default"} 1.0' in text
    assert 'quick_queue_queue_scheduled{queue="default"} 1.0' in text
    assert 'quick_queue_queue_zones{queue="default"} 2.0' in text
    assert 'quick_queue_queue_oldest_due_age_seconds{queue="default"} 2.0' in text


def test_lease_extensions_of_a_running_worker(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    import threading

    release = threading.Event()

    @qq.job(topic="m:long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            release.wait(10)

    queue = make_queue(Long)
    metrics = WorkerMetrics()
    queue.enqueue("a", "m:long", {})
    run = background(queue.run, concurrency=1, log=False)
    reg = metrics.registry
    wait_until(lambda: _value(reg, "quick_queue_handlers_running", queue="default") == 1,
               what="the handler to run")
    assert _value(reg, "quick_queue_lease_extensions_total", queue="default") == 0
    clock.advance(queue.settings.extend_interval + 1)  # the store's time: a round is due
    wait_until(lambda: _value(reg, "quick_queue_lease_extensions_total", queue="default") == 1,
               what="the keeper to extend the lease")
    release.set()
    queue.stop()
    run.result()


def _retries(registry: CollectorRegistry, labels: dict[str, str]) -> float:
    value = registry.get_sample_value("quick_queue_store_retries_total", labels)
    return 0.0 if value is None else value


def test_store_retries_by_error_code(make_queue: QueueFactory, db: qq.Database) -> None:
    from quick_queue.kv.api import Transaction
    from quick_queue.kv.faults import FaultyDatabase

    metrics = WorkerMetrics()  # starts the process's retry counter
    reg = metrics.registry
    conflict = {"code": "1020", "name": "not_committed"}
    unknown = {"code": "1021", "name": "commit_unknown_result"}
    before = _retries(reg, conflict)
    calls: list[int] = []

    def read_then_write(tr: Transaction) -> None:
        tr.get(b"\x01metrics-test")
        calls.append(1)
        if len(calls) == 1:  # another transaction commits a write to the key read
            other = db.create_transaction()
            other.set(b"\x01metrics-test", b"theirs")
            other.commit()
        tr.set(b"\x01metrics-test", b"ours")

    db.transact(read_then_write)
    assert _retries(reg, conflict) == before + 1
    # the queue's own transactions (enqueue) report theirs: 1021 from a faulty store
    faulty = FaultyDatabase(db, seed=5, unknown_not_committed=0.5)
    queue = make_queue(Ok, db=faulty)
    before_unknown = _retries(reg, unknown)
    for n in range(10):
        queue.enqueue(f"t{n}", "m:ok", {})
    injected = faulty.injected["unknown_not_committed"]
    assert injected > 0
    assert _retries(reg, unknown) == before_unknown + injected
    assert b'quick_queue_store_retries_total{code="1020",name="not_committed"}' in \
        generate_latest(reg)
