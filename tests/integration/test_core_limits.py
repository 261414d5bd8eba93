"""Issue 8 items 2, 3 and 9 through the whole queue (producer, worker, store) on the real
engine: an error near the size limit reaches the dead letter, an undecodable record does not
stop its zone, and max_retries of a handler the producer never imported applies."""

from __future__ import annotations

from typing import Any

import quick_queue as qq
from quick_queue.models import VALUE_LIMIT
from tests.conftest import QueueFactory


class Loud:
    runs = 0

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        Loud.runs += 1
        raise RuntimeError("E" * 5000)


def test_a_near_limit_job_dies_with_its_real_error(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    Loud.runs = 0  # (the test runs once per engine in one process)
    loud = qq.job(topic="loud", max_retries=1)(Loud)
    queue = make_queue(loud)
    job_id = queue.enqueue("t", "loud", {"blob": "x" * 99_500})
    for _ in range(2):
        queue.drain()
        clock.advance(3600)  # past any backoff
    assert Loud.runs == 2  # each attempt settled at once: no lease had to run out
    info = queue.get_job("t", job_id)
    assert info is not None and (info.state, info.dead_kind, info.attempt) == ("dead", "failed", 2)
    assert info.reason is not None and "RuntimeError: EEEE" in info.reason
    assert "lease expired" not in info.reason
    raw = queue.db.transact(lambda tr: tr.get(queue.layout.zone("t").dead_key(job_id)))
    assert raw is not None and len(raw) <= VALUE_LIMIT


@qq.job(topic="ok")
class Ok:
    done: list[int] = []

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        Ok.done.append(payload["n"])


def test_an_undecodable_record_does_not_stop_its_zone(make_queue: QueueFactory) -> None:
    Ok.done.clear()
    queue = make_queue(Ok)
    ids = [queue.enqueue("t", "ok", {"n": n}) for n in range(4)]
    zone = queue.layout.zone("t")
    item = zone.item(ids[1])
    record = queue.db.transact(lambda tr: tr.get(item))
    assert record is not None
    header = record.split(b"\n")[0]
    queue.db.transact(lambda tr: tr.set(item, header + b"\n\xff\xfe{not json"))  # bad payload
    queue.db.transact(lambda tr: tr.set(zone.item(ids[2]), b"\x00garbage\xff"))  # bad record
    summary = queue.drain()
    assert sorted(Ok.done) == [0, 3]
    assert summary.completed == 2
    dead = {d.job_id: d for d in queue.dead_letters("t")}
    assert dead[ids[1]].dead_kind == "bad_payload"
    assert dead[ids[2]].dead_kind == "unreadable" and dead[ids[2]].payload == b"\x00garbage\xff"
    info = queue.get_job("t", ids[2])
    assert info is not None and info.state == "dead"
    assert queue.drain().completed == 0  # nothing left that raises


class Boom:
    runs = 0

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        Boom.runs += 1
        raise RuntimeError("boom")


def test_a_handlers_max_retries_applies_when_the_producer_never_imported_it(
    make_queue: QueueFactory, clock: qq.ManualClock, db: qq.Database
) -> None:
    Boom.runs = 0  # (the test runs once per engine in one process)
    worker = make_queue(qq.job(topic="boom", max_retries=1)(Boom))
    producer = make_queue(name=worker.name)  # knows no handler, like `quick-queue enqueue`
    job_id = producer.enqueue("t", "boom", {})
    for _ in range(5):
        worker.drain()
        clock.advance(3600)
    info = worker.get_job("t", job_id)
    assert Boom.runs == 2 and info is not None and info.state == "dead"
