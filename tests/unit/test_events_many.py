"""A settled batch's events go out in one ``EventStream.emit_many`` (issue 10): every
subscriber, of the stream and of its parents, gets every event of the batch, in the batch's
order, with the same content as from ``emit``; the consumer's counter and worker log take the
batch in one call (``on_many``) and count and log exactly what they would event by event."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.executor import done_outcome
from quick_queue.consumer.runner import Consumer
from quick_queue.events import (
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


def test_the_settler_emits_a_batch_in_the_order_its_outcomes_came(db: qq.Database) -> None:
    """Completions settled in one batch, one of them stale (its token is not the lease's):
    a subscriber of the queue sees one event each, in the order they were submitted, the
    stale one as ``stale``, and the consumer counts them."""
    queue = qq.JobQueue(db, "many", jobs=[NoOp])
    queue.enqueue_many([{"tenant": "t", "topic": "many.noop", "payload": {"i": i}}
                        for i in range(6)])
    seen: list[JobEvent] = []
    queue.events.subscribe(seen.append)
    consumer = Consumer(queue.context, concurrency=6, prefetch=0)
    consumer.scanner.scan_once()
    runs = consumer.pool.take_queued()
    assert len(runs) == 6
    runs.reverse()  # not the order they were leased in
    for n, running in enumerate(runs):
        job, record = running.job, running.job.record
        token = job.token if n != 2 else job.token + "-stale"
        consumer.inflight.claim_outcome(running, OutcomeKind.DONE)
        consumer.settler.submit_claimed(running, done_outcome(
            job.tenant, record.job_id, token, record.topic, record.at, None))
    consumer.settler.close()
    consumer.settler.loop()
    assert [(e.kind, e.job_id) for e in seen] == [
        (EventKind.STALE if n == 2 else EventKind.COMPLETED, r.job.record.job_id)
        for n, r in enumerate(runs)]
    assert (consumer.summary().completed, consumer.summary().stale) == (5, 1)
    assert not consumer.inflight.entries
