"""Rate limits (issue 13): leases of a limited topic are spaced by the rate's interval across
every worker; a job whose turn has not come is handed back with no attempt spent."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core.rates import parse_rate
from quick_queue.flow.summary import read_flow
from tests.conftest import QueueFactory

started: list[float] = []


@qq.job(topic="flow:rated")
class Rated:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        started.append(payload)


@pytest.fixture(autouse=True)
def _clean() -> None:
    started.clear()


def test_one_lease_per_interval_and_the_rest_wait_unspent(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Rated)
    queue.set_rate_limit("flow:rated", "10/s")
    ids = queue.enqueue_many([("t", "flow:rated", n) for n in range(5)])
    queue.drain(timeout=5)
    assert started == [0]
    for job_id in ids[1:]:
        info = queue.get_job("t", job_id)
        assert info is not None and info.attempt == 0 and info.state == "scheduled"
    clock.advance(0.05)
    queue.drain(timeout=5)
    assert started == [0]  # half an interval: still nothing
    for n in range(1, 5):
        clock.advance(0.05 if n == 1 else 0.1)
        queue.drain(timeout=5)
        assert len(started) == n + 1  # exactly one more per interval, never a burst
    assert sorted(started) == [0, 1, 2, 3, 4]


def test_rates_parse_list_and_refuse_clearly(make_queue: QueueFactory) -> None:
    assert (parse_rate("100/s"), parse_rate("30/min"), parse_rate("5/h")) == \
        (10_000, 2_000_000, 720_000_000)
    queue = make_queue(Rated)
    queue.set_rate_limit("flow:rated", "4/s")
    assert "rate limits: flow:rated=4/s" in read_flow(queue.db, queue.layout).lines()
    queue.set_rate_limit("flow:rated", None)
    assert read_flow(queue.db, queue.layout).rates == {}
    for bad in ("fast", "0/s", "3/fortnight", "-1/s"):
        with pytest.raises(qq.InvalidArgument, match="COUNT/UNIT"):
            queue.set_rate_limit("flow:rated", bad)


def test_a_job_handed_back_for_its_turn_keeps_its_place_in_line(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    """10/s: job 1 waits for its turn; job 2, enqueued meanwhile, does not get ahead of it."""
    queue = make_queue(Rated)
    queue.set_rate_limit("flow:rated", "10/s")
    queue.enqueue("t", "flow:rated", 0)
    clock.advance(0.001)
    queue.enqueue("t", "flow:rated", 1)
    queue.drain(timeout=5)
    assert started == [0]  # 1 is handed back until 0.1 s
    clock.advance(0.01)
    queue.enqueue("t", "flow:rated", 2)
    for _ in range(2):
        clock.advance(0.1)
        queue.drain(timeout=5)
    assert started == [0, 1, 2]
