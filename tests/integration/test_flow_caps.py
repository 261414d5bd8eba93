"""Concurrency caps (issue 13): never more than N attempts of a capped topic at once; a job
finding no free slot is handed back with no attempt spent; slots of dead leases come back."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.scanner import CAP_RETRY_US
from quick_queue.core import caps
from quick_queue.keys import unpack
from quick_queue.models import to_us
from tests.conftest import Background, QueueFactory, wait_until
from tests.support.corekit import Store, check_invariants

state: dict[str, Any] = {}
CAPPED = caps.Targets(frozenset({"flow:capped"}))
JOB_SPACES = {"z", "d", "pm", "pr", "pd", "st", "h", "hx"}  # corekit.Store's key spaces


@qq.job(topic="flow:capped")
class Capped:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        with state["lock"]:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        state["release"].wait(10)
        with state["lock"]:
            state["running"] -= 1
            state["done"] += 1


@pytest.fixture(autouse=True)
def _state() -> None:
    state.update(lock=threading.Lock(), running=0, peak=0, done=0, release=threading.Event())


def test_never_more_than_the_cap_run_and_the_rest_wait_unspent(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any
) -> None:
    queue = make_queue(Capped)
    queue.set_max_running("flow:capped", 2)
    ids = queue.enqueue_many([("t", "flow:capped", n) for n in range(6)])
    worker: Background = background(queue.drain, concurrency=6, timeout=20)
    wait_until(lambda: queue.stats().scheduled == 4 and state["running"] == 2,
               what="two running, four handed back")
    for job_id in ids:
        info = queue.get_job("t", job_id)
        assert info is not None
        assert info.attempt == (1 if info.state == "leased" else 0)
    state["release"].set()
    worker.result()
    for _ in range(20):
        if state["done"] == 6:
            break
        clock.advance(1)
        queue.drain(concurrency=6, timeout=20)
    assert (state["done"], state["peak"]) == (6, 2)


def test_a_slot_whose_lease_ran_out_is_free_again(make_queue: QueueFactory,
                                                   clock: qq.ManualClock) -> None:
    queue = make_queue(Capped)
    queue.set_max_running("flow:capped", 1)
    queue.enqueue("t", "flow:capped", 1)
    now = to_us(clock.now())
    first = queue.db.create_transaction()
    from quick_queue.core.dequeue import dequeue

    def lease(tr: qq.Transaction, at: int) -> list[Any]:
        return dequeue(tr, queue.layout, "t", None, at, count=1, item_lease=1_000_000,
                       promote_max=10, min_inactive=0, new_token=lambda: f"tok{at}")

    jobs = lease(first, now)
    assert caps.take_slots(first, queue.layout, jobs, CAPPED, now, 1) == jobs
    first.commit()  # the worker holding the slot dies here
    clock.advance(2)  # its lease runs out: the slot is free for the job's next attempt
    later = to_us(clock.now())
    second = queue.db.create_transaction()
    again = lease(second, later)
    assert len(again) == 1
    assert caps.take_slots(second, queue.layout, again, CAPPED, later,
                           1) == again


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_bad_caps_are_refused(make_queue: QueueFactory, limit: Any) -> None:
    with pytest.raises(qq.InvalidArgument, match="max_running"):
        make_queue(Capped).set_max_running("flow:capped", limit)


def test_caps_are_listed_and_removed(make_queue: QueueFactory) -> None:
    from quick_queue.flow.summary import read_flow

    queue = make_queue(Capped)
    queue.set_max_running("flow:capped", 3)
    assert "max running: flow:capped=3" in read_flow(queue.db, queue.layout).lines()
    queue.set_max_running("flow:capped", None)
    assert read_flow(queue.db, queue.layout).caps == {}


order: list[str] = []


@qq.job(topic="flow:ordered")
class Ordered:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        order.append(payload)


def test_a_job_handed_back_for_a_slot_keeps_its_place_in_line(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    """Cap 1: "a" is handed back while "holder" runs; "b", enqueued after "a", does not get
    ahead of it when "a" comes back (issue 13: a job waiting for a slot keeps its place)."""
    order.clear()
    queue = make_queue(Ordered)
    queue.set_max_running("flow:ordered", 1)
    queue.enqueue("t", "flow:ordered", "holder")
    clock.advance(0.001)
    a = queue.enqueue("t", "flow:ordered", "a")
    queue.drain(concurrency=2, timeout=5)  # one visit leases both: "a" finds no slot
    info = queue.get_job("t", a)
    assert order == ["holder"] and info is not None
    assert (info.state, info.attempt) == ("scheduled", 0)
    _check_queue_invariants(queue, clock)  # the marked scheduled entry is a whole one
    clock.advance(0.01)
    queue.enqueue("t", "flow:ordered", "b")
    for _ in range(3):  # "b" may be leased while "a" runs, and wait its turn in turn
        clock.advance(CAP_RETRY_US / 1e6)
        queue.drain(concurrency=1, timeout=5)
    assert order == ["holder", "a", "b"]


def _check_queue_invariants(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    """corekit's invariants over the queue's job keys (the flow keys are not its business)."""
    root = queue.layout.root
    rows = queue.db.transact(lambda tr: tr.get_range(root, root + b"\xff"))
    jobs = {k: v for k, v in rows if unpack(k, len(root))[0] in JOB_SPACES}
    check_invariants(Store.parse(queue.layout, jobs), to_us(clock.now()),
                     to_us(queue.settings.pointer_slack))
