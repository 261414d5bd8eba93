"""Settling frees a run's slot in the in-flight table (``InFlight.remove_many``), and only its
own: another run of the same job held there (its retry, leased while this attempt's outcome
was being settled) stays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.inflight import Running
from quick_queue.consumer.runner import Consumer


@qq.job(topic="inflight.noop")
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@pytest.fixture
def consumer() -> Iterator[Consumer]:
    db = qq.open("memory://")
    try:
        queue = qq.JobQueue(db, "inflight", jobs=[NoOp])
        queue.enqueue_many([{"tenant": "t", "topic": "inflight.noop", "payload": {"i": i}}
                            for i in range(3)])
        consumer = Consumer(queue.context, concurrency=3, prefetch=0)
        consumer.scanner.scan_once()
        yield consumer
    finally:
        db.close()


def test_removing_a_run_frees_its_slot_and_marks_it_settled(consumer: Consumer) -> None:
    runs = consumer.pool.take_queued()
    inflight = consumer.inflight
    assert len(runs) == 3 and set(inflight.entries) == {r.key for r in runs}
    with inflight.lock:
        inflight.remove_many(runs[:2])
    assert list(inflight.entries) == [runs[2].key]
    assert [r.settled for r in runs] == [True, True, False]


def test_removing_an_earlier_run_keeps_a_later_run_of_the_same_job(
        consumer: Consumer) -> None:
    first, *others = consumer.pool.take_queued()
    inflight = consumer.inflight
    later = Running(first.job, first.meta, first.spec)  # the same job's next run, held here
    with inflight.lock:
        inflight.add(later)
        inflight.remove_many([first, *others])
        assert inflight.entries == {later.key: later} and first.settled
        assert not later.settled
        inflight.remove_many([later])
        assert inflight.entries == {} and later.settled
