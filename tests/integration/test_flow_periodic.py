"""Periodic schedules (issue 13): stored in the queue, ticked by any worker, each tick enqueued
exactly once however many workers race; the missed-tick policy; removal without a restart."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

import quick_queue as qq
from quick_queue.core import periodic
from quick_queue.flow import schedule
from quick_queue.flow.view import FlowView
from quick_queue.keys import unpack
from quick_queue.kv.errors import KVError
from quick_queue.models import to_us
from quick_queue.producer import job_id_for_key
from tests.conftest import QueueFactory

START = 1_800_000_000.0  # the ManualClock's start: a whole multiple of 10 s


@qq.job(topic="flow:beat")
class Beat:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


def _tick_ids(queue: qq.JobQueue, name: str, ticks: list[float]) -> list[str]:
    return [job_id_for_key(f"periodic:{name}:{to_us(t)}") for t in ticks]


def _live_ids(queue: qq.JobQueue, tenant: str) -> set[str]:
    zone = queue.layout.zone(tenant)
    rows = queue.db.transact(lambda tr: tr.get_range(zone.items, zone.items + b"\xff"))
    return {str(unpack(k, len(zone.items))[0]) for k, _ in rows}


def test_racing_tickers_enqueue_exactly_one_job_per_tick(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Beat)
    queue.periodic("beat", every=10, tenant="t", topic="flow:beat", payload={"n": 1})
    views = [FlowView(queue.context) for _ in range(3)]
    start, go, done = threading.Barrier(4), threading.Barrier(4), threading.Barrier(4)
    rounds = 15
    counts = [0, 0, 0]

    def worker(i: int) -> None:
        start.wait()
        for _ in range(rounds):
            go.wait()
            views[i]._read_at = -1e18  # a fresh read of the cursors each round
            views[i].refresh()
            counts[i] += views[i].tick_due(to_us(queue.db.store_time()))
            done.wait()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    start.wait()
    for _ in range(rounds):
        clock.advance(10)
        go.wait()
        done.wait()
    for thread in threads:
        thread.join(timeout=30)
    ticks = [START + 10 * k for k in range(1, rounds + 1)]
    assert sum(counts) == rounds
    assert _live_ids(queue, "t") == set(_tick_ids(queue, "beat", ticks))


def test_a_worker_that_drains_ticks_the_schedule(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    seen: list[str] = []

    @qq.job(topic="flow:seen")
    class Seen:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            seen.append(meta.job_id)

    queue = make_queue(Seen)
    queue.periodic("seen", every=5, tenant="t", topic="flow:seen")
    queue.drain(timeout=5)
    assert seen == []  # the first tick is the first one after the schedule was made
    clock.advance(5)
    queue.drain(timeout=5)
    clock.advance(5)
    queue.drain(timeout=5)
    assert seen == _tick_ids(queue, "seen", [START + 5, START + 10])


@pytest.mark.parametrize(("missed", "expected"), [
    ("skip", [START + 1000]),
    ("run_once", [START + 10, START + 1000]),
])
def test_missed_ticks_are_skipped_or_run_once(
    make_queue: QueueFactory, clock: qq.ManualClock, missed: str, expected: list[float]
) -> None:
    queue = make_queue(Beat)
    queue.periodic("beat", every=10, tenant="t", topic="flow:beat", missed=missed)
    clock.advance(1000)  # no worker ran for 99 ticks; the 100th is on time
    view = FlowView(queue.context)
    view.refresh()
    assert view.tick_due(to_us(clock.now())) == len(expected)
    assert _live_ids(queue, "t") == set(_tick_ids(queue, "beat", expected))
    assert queue.schedules()[0].next_tick == START + 1010


def test_removal_and_change_take_effect_without_a_restart(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Beat)
    queue.periodic("beat", every=10, tenant="t", topic="flow:beat")
    view = FlowView(queue.context)
    view.refresh()
    assert queue.periodic("beat", every=10, tenant="t", topic="flow:beat") is not None
    assert [s.schedule.name for s in queue.schedules()] == ["beat"]
    assert queue.remove_periodic("beat") is True
    assert queue.remove_periodic("beat") is False
    clock.advance(10)
    assert view.tick_due(to_us(clock.now())) == 0  # the stale cached cursor finds nothing
    assert _live_ids(queue, "t") == set()
    assert queue.schedules() == []


def test_cron_in_a_time_zone(make_queue: QueueFactory, clock: qq.ManualClock) -> None:
    queue = make_queue(Beat)
    info = queue.periodic("daily", cron="0 9 * * *", tz="Europe/Paris", tenant="t",
                          topic="flow:beat")
    assert info.cron == "0 9 * * *"
    nxt = queue.schedules()[0].next_tick
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(nxt, ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0) and nxt > clock.now()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of cron= or every="),
    ({"every": 5, "cron": "* * * * *"}, "exactly one of cron= or every="),
    ({"every": 0.01}, "at least 0.1 s"),
    ({"cron": "61 * * * *"}, "bad cron expression"),
    ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"every": 5, "missed": "later"}, "missed="),
])
def test_bad_schedules_are_refused_clearly(
    make_queue: QueueFactory, kwargs: dict[str, Any], message: str
) -> None:
    queue = make_queue(Beat)
    with pytest.raises(qq.InvalidArgument, match=message):
        queue.periodic("bad", tenant="t", topic="flow:beat", **kwargs)
    assert queue.schedules() == []


def test_two_overlapping_ticks_of_one_schedule_conflict(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    """The exactly-once argument itself: two workers that tick at once both read the cursor,
    so the second commit fails and its retry finds the tick done."""
    queue = make_queue(Beat)
    queue.periodic("beat", every=10, tenant="t", topic="flow:beat")
    clock.advance(10)
    now = to_us(clock.now())
    plan = FlowView(queue.context)._plan
    first, second = queue.db.create_transaction(), queue.db.create_transaction()
    assert periodic.tick(first, queue.layout, "beat", now, plan, 0)[0] == 1
    assert periodic.tick(second, queue.layout, "beat", now, plan, 0)[0] == 1
    first.commit()
    with pytest.raises(KVError) as raised:
        second.commit()
    assert raised.value.code == 1020
    assert queue.db.transact(periodic.tick, queue.layout, "beat", now, plan, 0)[0] == 0
    assert _live_ids(queue, "t") == set(_tick_ids(queue, "beat", [START + 10]))


def test_ticks_are_cut_by_bytes_and_the_rest_done_by_the_next_transaction(
    make_queue: QueueFactory, clock: qq.ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No tick transaction carries more than ``schedule.BATCH`` bytes of payload (1 MB; made
    smaller here), and the ticks it leaves over are enqueued by the next one, none skipped."""
    monkeypatch.setattr(schedule, "BATCH", 250_000)
    queue = make_queue(Beat)
    queue.periodic("big", every=0.1, tenant="t", topic="flow:beat", payload="x" * 95_000)
    clock.advance(0.95)  # nine ticks due, all within the 1 s grace
    plan = FlowView(queue.context)._plan
    now = to_us(clock.now())
    counts = []
    while count := queue.db.transact(periodic.tick, queue.layout, "big", now, plan, 0)[0]:
        counts.append(count)
    assert counts == [2, 2, 2, 2, 1]
    ticks = [START + 0.1 * k for k in range(1, 10)]
    assert _live_ids(queue, "t") == set(_tick_ids(queue, "big", ticks))


class TypedPayload(BaseModel):
    n: int


@qq.job(topic="flow:typed", priority=5)
class Typed:
    Payload = TypedPayload

    def perform(self, payload: TypedPayload, meta: qq.JobMeta) -> None:
        pass


def test_the_defining_queues_handler_checks_the_payload_and_fixes_the_priority(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Typed)
    with pytest.raises(qq.PayloadError):
        queue.periodic("typed", every=10, tenant="t", topic="flow:typed", payload={"n": "x"})
    queue.periodic("typed", every=10, tenant="t", topic="flow:typed",
                   payload=TypedPayload(n=3))
    clock.advance(10)
    other = make_queue(Beat)  # a worker with other handlers ticks it, with no warning
    view = FlowView(other.context)
    view.refresh()
    assert view.tick_due(to_us(clock.now())) == 1
    info = queue.get_job("t", key=f"periodic:typed:{to_us(START + 10)}")
    assert info is not None and info.priority == 5 and info.payload == {"n": 3}
