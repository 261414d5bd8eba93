"""A worker builds its ``started`` event only when someone would read it (issue 10): a
subscriber of the queue's (or the consumer's) stream, or the worker log at INFO. What each
reader sees is unchanged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.events import EventCounter, EventKind, EventStream, JobEvent, WorkerLog
from quick_queue.telemetry import Counters


@qq.job(topic="wanted.noop")
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@pytest.fixture
def queue() -> Iterator[qq.JobQueue]:
    db = qq.open("memory://")
    try:
        yield qq.JobQueue(db, "wanted", jobs=[NoOp])
    finally:
        db.close()


def _consumer_stream(parent: EventStream) -> EventStream:
    stream = EventStream(parent=parent)  # as a Consumer subscribes its own
    stream.subscribe(EventCounter(Counters()))
    stream.subscribe(WorkerLog())
    return stream


def test_started_is_wanted_only_by_a_reader(caplog: pytest.LogCaptureFixture) -> None:
    root = EventStream()
    stream = _consumer_stream(root)
    caplog.set_level(logging.WARNING, logger="quick_queue.worker")
    assert not stream.wants(EventKind.STARTED)
    for kind in EventKind:  # every other kind is counted or logged
        assert stream.wants(kind) is (kind is not EventKind.STARTED)
    caplog.set_level(logging.INFO, logger="quick_queue.worker")
    assert stream.wants(EventKind.STARTED)  # the worker log writes "start" lines
    caplog.set_level(logging.WARNING, logger="quick_queue.worker")
    seen: list[JobEvent] = []
    reader = root.subscribe(seen.append)
    assert stream.wants(EventKind.STARTED)  # someone subscribed to the queue's stream
    root.unsubscribe(reader)
    assert not stream.wants(EventKind.STARTED)
    stream.subscribe(seen.append)
    assert stream.wants(EventKind.STARTED)  # or to the consumer's own


def test_a_subscriber_sees_every_started_event(queue: qq.JobQueue,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="quick_queue.worker")
    seen: list[JobEvent] = []
    queue.events.subscribe(seen.append)
    ids = [queue.enqueue("t", "wanted.noop", {"i": i}) for i in range(5)]
    summary = queue.drain(concurrency=2, timeout=30)
    assert summary.completed == 5
    started = [e for e in seen if e.kind is EventKind.STARTED]
    assert sorted(e.job_id for e in started) == sorted(str(i) for i in ids)
    assert all(e.attempt == 1 and e.waited is not None and e.waited >= 0 for e in started)
    assert sorted(e.job_id for e in seen if e.kind is EventKind.COMPLETED) == sorted(
        str(i) for i in ids)


def test_the_worker_log_at_info_logs_every_start(queue: qq.JobQueue,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quick_queue.worker")
    ids = [queue.enqueue("t", "wanted.noop", {"i": i}) for i in range(3)]
    assert queue.drain(concurrency=2, timeout=30).completed == 3
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("start ")]
    assert sorted(starts) == sorted(f"start wanted.noop t/{i} attempt 1" for i in ids)


def test_without_readers_the_summary_still_counts(queue: qq.JobQueue,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="quick_queue.worker")
    for i in range(4):
        queue.enqueue("t", "wanted.noop", {"i": i})
    summary = queue.drain(concurrency=2, timeout=30)
    assert (summary.completed, summary.failed, summary.extra) == (4, 0, {})
    assert not [r for r in caplog.records if r.getMessage().startswith("start ")]


def test_unsubscribing_keeps_each_subscribers_skips_with_it(
        caplog: pytest.LogCaptureFixture) -> None:
    # ``wants`` reads the ``skips`` looked up when each subscriber subscribed: removing one
    # subscriber removes its own, whichever its place (a reader between two that skip)
    caplog.set_level(logging.WARNING, logger="quick_queue.worker")
    stream = EventStream()
    log_first = stream.subscribe(WorkerLog())
    seen: list[JobEvent] = []
    reader = stream.subscribe(seen.append)
    stream.subscribe(EventCounter(Counters()))
    assert stream.wants(EventKind.STARTED)
    stream.unsubscribe(reader)
    assert not stream.wants(EventKind.STARTED)
    stream.subscribe(reader)
    stream.unsubscribe(log_first)
    assert stream.wants(EventKind.STARTED)  # the reader is still there
    assert stream.wants(EventKind.COMPLETED)
