"""A settled batch's events go out in one ``EventStream.emit_many`` (issue 10): every
subscriber, of the stream and of its parents, gets every event of the batch, in the batch's
order, with the same content as from ``emit``; the consumer's counter and worker log take the
batch in one call (``on_many``) and count and log exactly what they would event by event."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer import settler as settler_module
from quick_queue.consumer.executor import done_outcome
from quick_queue.consumer.runner import Consumer
from quick_queue.events import (
    EventBatch,
    EventCounter,
    EventKind,
    EventStream,
    JobEvent,
    WorkerLog,
    log_event,
)
from quick_queue.outcomes import OutcomeKind
from quick_queue.telemetry import Counters


def _batch() -> list[JobEvent]:
    """One event of every kind a settle emits, and a few completions between them."""
    return [
        JobEvent(EventKind.COMPLETED, "t", "noop", "j1", 1, 0.5, OutcomeKind.DONE, "",
                 ("completed",)),
        JobEvent(EventKind.RETRIED, "t", "noop", "j2", 1, 0.1, OutcomeKind.RETRY, "boom",
                 ("failed", "retried")),
        JobEvent(EventKind.DEAD, "t", "noop", "j3", 3, 0.1, OutcomeKind.RETRY, "boom",
                 ("failed", "dead")),
        JobEvent(EventKind.DEAD, "u", "noop", "j4", 1, None, OutcomeKind.DEAD, "bad payload",
                 ("dead",)),
        JobEvent(EventKind.STALE, "t", "noop", "j5", 1, 0.2, OutcomeKind.DONE, "lease taken",
                 ("stale",)),
        JobEvent(EventKind.CANCELLED, "t", "noop", "j6", 1, 0.2, OutcomeKind.DONE,
                 "lease cancelled", ("stale", "cancelled")),
        JobEvent(EventKind.SNOOZED, "t", "noop", "j7", 1, 0.0, OutcomeKind.SNOOZE, "",
                 ("snoozed",)),
        JobEvent(EventKind.DISCARDED, "t", "x\n", "j8", 1, 0.0, OutcomeKind.DISCARD, "no",
                 ("discarded", "dead")),
        JobEvent(EventKind.RELEASED, "t", "noop", "j9", 1, None, OutcomeKind.RELEASE, "", ()),
        JobEvent(EventKind.COMPLETED, "t", "noop", "j10", 2, 0.5, OutcomeKind.DONE, "",
                 ("completed",)),
    ]


def test_every_subscriber_gets_the_whole_batch_in_order_and_a_failure_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = EventStream()
    leaf = EventStream(parent=root)
    seen: dict[str, list[JobEvent]] = {"leaf": [], "root": [], "many": []}
    calls = 0

    def broken(event: JobEvent) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("subscriber bug")

    class Batched:
        def __call__(self, event: JobEvent) -> None:
            raise AssertionError("a batch goes to on_many")

        def on_many(self, events: list[JobEvent]) -> None:
            seen["many"].extend(events)

    leaf.subscribe(seen["leaf"].append)
    leaf.subscribe(broken)
    root.subscribe(Batched())
    root.subscribe(seen["root"].append)
    batch = _batch()
    with caplog.at_level(logging.ERROR, logger="quick_queue.worker"):
        leaf.emit_many(batch[:4])
        leaf.emit_many(batch[4:])
    assert seen == {"leaf": batch, "root": batch, "many": batch}
    assert calls == len(batch)  # a failing subscriber still gets every event
    failures = [r for r in caplog.records if "failed (logged once)" in r.getMessage()]
    assert len(failures) == 1


def test_a_failing_on_many_does_not_keep_the_batch_from_the_others() -> None:
    stream = EventStream()
    seen: list[JobEvent] = []

    class Broken:
        def __call__(self, event: JobEvent) -> None:
            pass

        def on_many(self, events: list[JobEvent]) -> None:
            raise RuntimeError("subscriber bug")

    stream.subscribe(Broken())
    stream.subscribe(seen.append)
    stream.emit_many(_batch())
    assert seen == _batch()


def test_the_counter_adds_up_a_batch_as_it_adds_its_events_one_by_one() -> None:
    one_by_one, batched = EventCounter(), EventCounter()
    for event in _batch():
        one_by_one(event)
    batched.on_many(_batch()[:3])
    batched.on_many([])
    batched.on_many(_batch()[3:])
    assert batched.counters.snapshot() == one_by_one.counters.snapshot()
    assert batched.counters.snapshot()["completed"] == 2
    assert batched.counters.snapshot()["dead"] == 3


def test_counters_add_many_adds_to_what_is_there() -> None:
    counters = Counters()
    counters.add("completed")
    counters.add_many({"completed": 3, "stale": 1})
    assert counters.snapshot() == {"completed": 4, "stale": 1}


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING,
                                   logging.ERROR])
def test_the_worker_log_logs_a_batch_as_it_logs_its_events_one_by_one(
    caplog: pytest.LogCaptureFixture, level: int,
) -> None:
    def lines() -> list[tuple[int, str, object]]:
        out = [(r.levelno, r.getMessage(), getattr(r, "job_event", None))
               for r in caplog.records]
        caplog.clear()
        return out

    with caplog.at_level(level, logger="quick_queue.worker"):
        for event in _batch():
            log_event(event)
        expected = lines()
        WorkerLog.on_many(_batch())
        assert lines() == expected
    assert expected or level == logging.ERROR
    if level == logging.WARNING:  # the warning kinds only: stale, dead without running
        assert [m.split()[0] for _, m, _ in expected] == ["dead", "stale"]


@qq.job(topic="many.noop")
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def _settle_in_one_batch(queue: qq.JobQueue, jobs: int, stale: int | None) -> Consumer:
    """Lease ``jobs`` jobs and settle their completions in one batch, in the reverse of the
    order they were leased; the one at ``stale`` with a token that is not the lease's."""
    queue.enqueue_many([{"tenant": "t", "topic": "many.noop", "payload": {"i": i}}
                        for i in range(jobs)])
    consumer = Consumer(queue.context, concurrency=jobs, prefetch=0)
    consumer.scanner.scan_once()
    runs = consumer.pool.take_queued()
    assert len(runs) == jobs
    runs.reverse()  # not the order they were leased in
    for n, running in enumerate(runs):
        job, record = running.job, running.job.record
        token = job.token if n != stale else job.token + "-stale"
        running.started_mono = time.monotonic()  # as a worker does when its handler starts
        consumer.inflight.claim_outcome(running, OutcomeKind.DONE)
        consumer.settler.submit_claimed(running, done_outcome(
            job.tenant, record.job_id, token, record.topic, record.at, None))
    consumer.settler.close()
    consumer.settler.loop()
    consumer.runs = runs  # type: ignore[attr-defined]
    return consumer


@pytest.mark.parametrize("stale", [None, 0, 2, 5])
def test_the_settler_emits_a_batch_in_the_order_its_outcomes_came(
    db: qq.Database, stale: int | None,
) -> None:
    """Completions settled in one batch, one of them stale or none (a batch of completions
    only is an ``EventBatch``): a subscriber of the queue sees one event each, in the order
    they were submitted, a stale one as ``stale``, and the consumer counts them."""
    queue = qq.JobQueue(db, "many", jobs=[NoOp])
    seen: list[JobEvent] = []
    queue.events.subscribe(seen.append)
    consumer = _settle_in_one_batch(queue, 6, stale)
    runs = consumer.runs  # type: ignore[attr-defined]
    assert [(e.kind, e.job_id, e.tenant, e.topic, e.attempt, e.outcome, e.counters)
            for e in seen] == [
        (EventKind.STALE, r.job.record.job_id, "t", "many.noop", 1, OutcomeKind.DONE,
         ("stale",)) if n == stale else
        (EventKind.COMPLETED, r.job.record.job_id, "t", "many.noop", 1, OutcomeKind.DONE,
         ("completed",)) for n, r in enumerate(runs)]
    assert all(e.duration is not None and e.duration >= 0 for e in seen)
    assert (consumer.summary().completed, consumer.summary().stale) == (
        6 - (stale is not None), stale is not None)
    assert not consumer.inflight.entries


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_a_batch_of_completions_is_built_only_for_a_reader(
    db: qq.Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
    level: int,
) -> None:
    """With only the consumer's own subscribers, a batch of completions is counted without
    its events being built when the worker log is below INFO; at INFO each is logged, in
    order."""
    builds: list[int] = []
    build = settler_module._completed_events

    def counted(done: list[Any], now: float) -> list[JobEvent]:
        builds.append(len(done))
        return build(done, now)

    monkeypatch.setattr(settler_module, "_completed_events", counted)
    queue = qq.JobQueue(db, "many", jobs=[NoOp])
    with caplog.at_level(level, logger="quick_queue.worker"):
        consumer = _settle_in_one_batch(queue, 5, None)
    assert consumer.summary().completed == 5
    if level == logging.WARNING:
        assert (builds, caplog.records) == ([], [])
    else:
        assert builds == [5]
        assert [r.getMessage() for r in caplog.records] == [
            f"done many.noop t/{r.job.record.job_id}"
            for r in consumer.runs]  # type: ignore[attr-defined]


def test_an_event_batch_is_its_events_built_once() -> None:
    builds: list[int] = []

    def build() -> list[JobEvent]:
        builds.append(1)
        return _batch()

    batch = EventBatch(build, frozenset({EventKind.COMPLETED}), {"completed": 2})
    counter = EventCounter()
    counter.on_many(batch)
    WorkerLog.on_many(batch)  # (no log at INFO or WARNING here: nothing read)
    assert builds == []
    assert counter.counters.snapshot() == {"completed": 2}
    assert list(batch) == _batch() and len(batch) == len(_batch())
    assert batch[0] == _batch()[0] and batch[-2:] == _batch()[-2:]
    assert builds == [1]
