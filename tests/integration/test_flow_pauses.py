"""Pause and resume a tenant or a topic (issue 13): paused work stays queued with no attempt
spent, nothing of it starts, the zone is parked rather than scanned over and over, and
everything runs after resume, in its order."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core import pauses
from quick_queue.core.pointers import read_pointer
from quick_queue.kv.errors import KVError
from quick_queue.models import to_us
from tests.conftest import QueueFactory

ran: list[tuple[str, str]] = []


@qq.job(topic="flow:x")
class X:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        ran.append((meta.tenant, f"x{payload}"))


@qq.job(topic="flow:y")
class Y:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        ran.append((meta.tenant, f"y{payload}"))


@pytest.fixture(autouse=True)
def _clean() -> None:
    ran.clear()


def _vesting(queue: qq.JobQueue, tenant: str) -> int | None:
    pointer = queue.db.transact(read_pointer, queue.layout, tenant)
    return None if pointer is None else pointer.vesting


def test_a_paused_tenant_waits_parked_and_runs_after_resume(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(X)
    assert queue.pause(tenant="a") is True
    assert queue.pause(tenant="a") is False
    ids = [queue.enqueue("a", "flow:x", n) for n in range(3)]
    queue.enqueue("b", "flow:x", 9)
    queue.drain(timeout=5)
    assert ran == [("b", "x9")]
    assert _vesting(queue, "a") == pauses.PARKED  # not due: no scanner loops over it
    for job_id in ids:
        info = queue.get_job("a", job_id)
        assert info is not None and info.state == "ready" and info.attempt == 0
    assert queue.paused() == {"tenant": ["a"], "topic": []}
    queue.enqueue("a", "flow:x", 3)  # a producer adding to a paused zone leaves it parked
    assert _vesting(queue, "a") == pauses.PARKED
    assert queue.resume(tenant="a") is True
    assert queue.resume(tenant="a") is False
    queue.drain(timeout=5)
    assert ran[1:] == [("a", "x0"), ("a", "x1"), ("a", "x2"), ("a", "x3")]
    assert queue.paused() == {"tenant": [], "topic": []}


def test_a_paused_topic_is_set_aside_and_runs_in_order_after_resume(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(X, Y)
    queue.pause(topic="flow:x")
    for n in range(3):
        queue.enqueue("t", "flow:x", n)
        queue.enqueue("t", "flow:y", n)
    queue.drain(timeout=5)
    assert ran == [("t", "y0"), ("t", "y1"), ("t", "y2")]
    stats = queue.stats()
    assert (stats.ready, stats.leased, stats.dead) == (0, 0, 0)
    clock.advance(queue.settings.item_lease + 1)
    queue.drain(timeout=5)  # the next visit finds only set-aside jobs: the zone parks
    assert _vesting(queue, "t") == pauses.PARKED
    assert queue.resume(topic="flow:x") is True
    queue.drain(timeout=5)
    assert ran[3:] == [("t", "x0"), ("t", "x1"), ("t", "x2")]
    assert queue.stats().scheduled == 0


def test_a_set_aside_job_spends_no_attempt_and_can_be_cancelled(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(X)
    queue.pause(topic="flow:x")
    keep, drop = queue.enqueue("t", "flow:x", 1), queue.enqueue("t", "flow:x", 2)
    queue.drain(timeout=5)
    info = queue.get_job("t", keep)
    assert info is not None and info.attempt == 0 and info.state == "scheduled"
    assert queue.cancel("t", drop) is True
    queue.resume(topic="flow:x")
    queue.drain(timeout=5)
    assert ran == [("t", "x1")]


def test_a_stale_park_and_a_resume_conflict(make_queue: QueueFactory) -> None:
    """A worker whose cached view still says "paused" parks the zone while the tenant is
    resumed: the two transactions conflict, so the zone is never left parked."""
    queue = make_queue(X)
    queue.pause(tenant="a")
    queue.enqueue("a", "flow:x", 1)
    now = to_us(queue.db.store_time())
    park, resume = queue.db.create_transaction(), queue.db.create_transaction()
    assert pauses.park_zone(park, queue.layout, "a", now) is True
    assert pauses.clear_pause(resume, queue.layout, "tenant", "a", now) is True
    resume.commit()
    with pytest.raises(KVError):
        park.commit()
    assert queue.db.transact(pauses.park_zone, queue.layout, "a", now) is False
    queue.drain(timeout=5)
    assert ran == [("a", "x1")]


@pytest.mark.parametrize("kwargs", [{}, {"topic": "x", "tenant": "a"}, {"topic": ""}])
def test_pause_needs_one_target(make_queue: QueueFactory, kwargs: dict[str, str]) -> None:
    queue = make_queue(X)
    with pytest.raises(qq.InvalidArgument, match=r"topic= or tenant=|non-empty"):
        queue.pause(**kwargs)
