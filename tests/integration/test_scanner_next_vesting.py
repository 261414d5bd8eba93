"""The scanner's idle wait never runs past the next pointer's time (a scheduled job starts on
time). A scan reads that time only when no zone is due; when due zones were found but none
leased anything, the scanner reads it itself (issue 10: one range read fewer per visit)."""

from __future__ import annotations

from typing import Any

import quick_queue as qq
from quick_queue.consumer.runner import Consumer
from tests.conftest import QueueFactory


@qq.job(topic="vesting:x")
class X:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


def test_due_zones_that_lease_nothing_still_wait_only_until_the_next_vesting(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(X)
    queue.pause(tenant="a")
    queue.enqueue("a", "vesting:x", 1)  # due, but paused: the scan parks it, leases nothing
    queue.enqueue("b", "vesting:x", 2, in_=0.03)  # the next pointer: due in 30 ms
    scanner = Consumer(queue.context, 1).scanner
    got, due, wait = scanner.scan_once()
    assert (got, due) == (0, False)
    assert 0.0 <= wait <= 0.03  # not the scan interval's 80-120 ms


def test_an_idle_scan_waits_until_the_next_vesting(make_queue: QueueFactory) -> None:
    queue = make_queue(X)
    queue.enqueue("b", "vesting:x", 2, in_=0.02)
    got, due, wait = Consumer(queue.context, 1).scanner.scan_once()
    assert (got, due) == (0, False) and 0.0 <= wait <= 0.02
