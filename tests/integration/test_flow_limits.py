"""Caps and rates declared by a handler (``@job(max_running=..., rate_limit=...)``) and set
per tenant (issue 13): enforced in the store like the queue-level settings; a job waiting for
its turn spends no attempt."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core import caps, rates
from quick_queue.flow.summary import read_flow
from tests.conftest import Background, QueueFactory, wait_until

state: dict[str, Any] = {}


def _run(meta: qq.JobMeta) -> None:
    with state["lock"]:
        state["running"][meta.tenant] = state["running"].get(meta.tenant, 0) + 1
        state["peak"][meta.tenant] = max(state["peak"].get(meta.tenant, 0),
                                         state["running"][meta.tenant])
        state["total"] += 1
        state["top"] = max(state["top"], state["total"])
    state["release"].wait(10)
    with state["lock"]:
        state["running"][meta.tenant] -= 1
        state["total"] -= 1
        state["done"] += 1


@qq.job(topic="flow:declared", max_running=2)
class Declared:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        _run(meta)


@qq.job(topic="flow:declared")
class Undeclared:
    """The same topic, in a later version of the code that no longer caps it."""

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        _run(meta)


@qq.job(topic="flow:plain")
class Plain:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        _run(meta)


@qq.job(topic="flow:paced", rate_limit="10/s")
class Paced:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        state["started"].append((meta.tenant, payload))


@qq.job(topic="flow:quick")
class Quick:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        state["started"].append((meta.tenant, payload))


@pytest.fixture(autouse=True)
def _state() -> None:
    state.update(lock=threading.Lock(), running={}, peak={}, total=0, top=0, done=0,
                 release=threading.Event(), started=[])


def _drain_all(queue: qq.JobQueue, clock: qq.ManualClock, count: int) -> None:
    for _ in range(40):
        if state["done"] + len(state["started"]) >= count:
            return
        clock.advance(0.25)
        queue.drain(concurrency=8, timeout=20)
    raise AssertionError(f"only {state['done']} of {count} jobs done")


def _unspent(queue: qq.JobQueue, tenant: str, ids: list[str]) -> None:
    for job_id in ids:
        info = queue.get_job(tenant, job_id)
        assert info is not None
        assert info.attempt == (1 if info.state == "leased" else 0)


def test_a_declared_cap_holds_and_the_rest_wait_unspent(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any
) -> None:
    queue = make_queue(Declared)
    ids = queue.enqueue_many([("t", "flow:declared", n) for n in range(6)])
    worker: Background = background(queue.drain, concurrency=6, timeout=20)
    wait_until(lambda: queue.stats().scheduled == 4 and state["total"] == 2,
               what="two running, four handed back")
    _unspent(queue, "t", ids)
    assert "max running: flow:declared=2" in read_flow(queue.db, queue.layout).lines()
    state["release"].set()
    worker.result()
    _drain_all(queue, clock, 6)
    assert (state["done"], state["top"]) == (6, 2)


def test_the_queue_setting_wins_over_the_declaration_while_set(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any
) -> None:
    queue = make_queue(Declared)
    queue.set_max_running("flow:declared", 3)
    queue.enqueue_many([("t", "flow:declared", n) for n in range(6)])
    worker: Background = background(queue.drain, concurrency=6, timeout=20)
    wait_until(lambda: queue.stats().scheduled == 3 and state["total"] == 3,
               what="three running (the queue's setting), three handed back")
    state["release"].set()
    worker.result()
    queue.set_max_running("flow:declared", None)  # the declaration (2) applies again
    assert read_flow(queue.db, queue.layout).caps == {"flow:declared": 2}


def test_a_worker_whose_handler_declares_nothing_clears_the_declaration(
    make_queue: QueueFactory,
) -> None:
    old = make_queue(Declared, Paced)
    old.drain(timeout=5)  # a worker starts: it publishes its handlers' declarations
    flow = read_flow(old.db, old.layout)
    assert (flow.caps, flow.rates) == ({"flow:declared": 2}, {"flow:paced": 100_000})
    make_queue(Undeclared).drain(timeout=5)  # the new version: no cap any more
    flow = read_flow(old.db, old.layout)
    assert (flow.caps, flow.rates) == ({}, {"flow:paced": 100_000})


def test_a_declared_rate_spaces_leases(make_queue: QueueFactory, clock: qq.ManualClock) -> None:
    queue = make_queue(Paced)
    queue.enqueue_many([("t", "flow:paced", n) for n in range(4)])
    queue.drain(timeout=5)
    assert len(state["started"]) == 1
    for n in range(2, 5):
        clock.advance(0.1)
        queue.drain(timeout=5)
        assert len(state["started"]) == n  # one per interval of 100 ms, never a burst


@pytest.mark.parametrize(("options", "match"), [
    ({"max_running": 0}, "max_running"), ({"max_running": True}, "max_running"),
    ({"rate_limit": "fast"}, "rate_limit"), ({"rate_limit": 10}, "rate_limit"),
])
def test_bad_declarations_are_refused_at_import(options: dict[str, Any], match: str) -> None:
    with pytest.raises(qq.ConfigurationError, match=match):
        qq.job(topic="flow:bad", **options)


def test_a_tenant_cap_holds_over_every_topic_and_leaves_other_tenants_alone(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any
) -> None:
    queue = make_queue(Plain, Declared)
    queue.set_tenant_max_running("a", 1)
    a_ids = queue.enqueue_many([("a", "flow:plain", n) for n in range(3)]
                               + [("a", "flow:declared", n) for n in range(2)])
    queue.enqueue_many([("b", "flow:plain", n) for n in range(3)])
    worker: Background = background(queue.drain, concurrency=8, timeout=20)
    wait_until(lambda: state["running"].get("a") == 1 and state["running"].get("b") == 3,
               what="one of a running, all three of b")
    _unspent(queue, "a", a_ids)
    assert "tenant max running: a=1" in read_flow(queue.db, queue.layout).lines()
    state["release"].set()
    worker.result()
    _drain_all(queue, clock, 8)
    assert state["peak"] == {"a": 1, "b": 3}


def test_a_tenant_rate_spaces_that_tenants_leases_only(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Quick)
    queue.set_tenant_rate_limit("slow", "5/s")
    queue.enqueue_many([("slow", "flow:quick", n) for n in range(3)]
                       + [("fast", "flow:quick", n) for n in range(3)])
    queue.drain(timeout=5)
    assert [t for t, _ in state["started"]].count("slow") == 1
    assert [t for t, _ in state["started"]].count("fast") == 3
    clock.advance(0.1)  # half the slow tenant's interval
    queue.drain(timeout=5)
    assert [t for t, _ in state["started"]].count("slow") == 1
    clock.advance(0.1)
    queue.drain(timeout=5)
    assert [t for t, _ in state["started"]].count("slow") == 2
    assert "tenant rate limits: slow=5/s" in read_flow(queue.db, queue.layout).lines()
    queue.set_tenant_rate_limit("slow", None)
    assert read_flow(queue.db, queue.layout).tenant_rates == {}


@pytest.mark.parametrize(("call", "args"), [
    ("set_tenant_max_running", ("t", 0)), ("set_tenant_max_running", ("", 2)),
    ("set_tenant_rate_limit", ("t", "often")), ("set_tenant_rate_limit", ("", "1/s")),
])
def test_bad_tenant_limits_are_refused(make_queue: QueueFactory, call: str,
                                       args: tuple[Any, ...]) -> None:
    with pytest.raises(qq.InvalidArgument):
        getattr(make_queue(Plain), call)(*args)


def test_a_job_under_a_topic_rate_and_a_tenant_rate_waits_for_both(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Paced)  # 10/s declared by the handler
    queue.set_tenant_rate_limit("slow", "5/s")
    queue.enqueue_many([("slow", "flow:paced", n) for n in range(3)])
    for expected in (1, 1, 2, 2, 3):
        queue.drain(timeout=5)
        assert len(state["started"]) == expected
        clock.advance(0.1)


def test_keys_of_tenant_limits_do_not_collide_with_topic_ones(make_queue: QueueFactory) -> None:
    layout = make_queue().layout
    assert caps.tenant_slots(layout, "x") != layout.slots("x")
    assert rates.tenant_state(layout, "x") != layout.rate_state("x")
