"""The settler's loop is woken by a submitted outcome when it waits idle, and only then
(issue 10: a notify per job cost ~1 µs with nobody waiting). Its unasked poll is made an
hour long here, so a missed wake-up shows as a drain that times out. Submitters append without
the lock; 16 workers finishing together race the loop's going idle many times over."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer.executor import done_outcome
from quick_queue.consumer.runner import Consumer
from quick_queue.consumer.settler import Settler


@qq.job(topic="wake.noop")
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@pytest.mark.parametrize("jobs, concurrency", [(1, 1), (40, 4), (400, 16)])
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


class _RacingSettler(Settler):
    """A settler whose loop, as it announces that it goes idle, meets an outcome submitted
    just before: appended, and ``_idle`` read while still False (so no notify)."""

    racing: tuple[Any, Any] | None = None

    @property
    def _idle(self) -> bool:
        return bool(self.__dict__.get("idle", False))

    @_idle.setter
    def _idle(self, value: bool) -> None:
        if value and self.racing is not None:
            racing, self.racing = self.racing, None
            self.submit_claimed(*racing)  # reads ``_idle``: False yet
        self.__dict__["idle"] = value


def test_an_outcome_submitted_as_the_loop_goes_idle_is_settled_without_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Settler, "IDLE_POLL", 3600.0)
    db = qq.open("memory://")
    try:
        queue = qq.JobQueue(db, "wake", jobs=[NoOp])
        queue.enqueue("t", "wake.noop", {})
        consumer = Consumer(queue.context, concurrency=1, prefetch=0)
        consumer.scanner.scan_once()
        (running,) = consumer.pool.take_queued()
        record = running.job.record
        outcome = done_outcome(running.job.tenant, record.job_id, running.job.token,
                               record.topic, record.at, None)
        assert consumer.inflight.claim_outcome(running, outcome.kind)
        settler = _RacingSettler(queue.context, consumer.inflight, consumer.events)
        settler.racing = (running, outcome)
        loop = threading.Thread(target=settler.loop, daemon=True)
        loop.start()
        deadline = time.monotonic() + 10
        while not running.settled and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline: the loop settles it at once or never
        assert running.settled and settler.racing is None
        assert queue.stats().leased == 0 and queue.stats().ready == 0
        settler.close()
        loop.join(10)
        assert not loop.is_alive()
    finally:
        db.close()
