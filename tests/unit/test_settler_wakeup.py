"""The settler's loop is woken by a submitted outcome when it waits idle, and only then
(issue 10: a notify per job cost ~1 µs with nobody waiting). Its unasked poll is made an
hour long here, so a missed wake-up shows as a drain that times out."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.settler import Settler


@qq.job(topic="wake.noop")
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@pytest.mark.parametrize("jobs, concurrency", [(1, 1), (40, 4)])
def test_every_outcome_is_settled_without_the_idle_poll(
    monkeypatch: pytest.MonkeyPatch, jobs: int, concurrency: int
) -> None:
    monkeypatch.setattr(Settler, "IDLE_POLL", 3600.0)
    db = qq.open("memory://")
    try:
        queue = qq.JobQueue(db, "wake", jobs=[NoOp])
        for i in range(jobs):
            queue.enqueue("t", "wake.noop", {"i": i})
        summary = queue.drain(concurrency=concurrency, timeout=30)
        assert (summary.completed, summary.timed_out) == (jobs, False)
        assert queue.stats().ready == 0 and queue.stats().leased == 0
    finally:
        db.close()
