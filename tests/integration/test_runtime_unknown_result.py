"""A zone visit whose commit ends in commit_unknown_result (1021) but did commit: the consumer
finds its tokens in the records and runs the jobs now, instead of leaving them leased to
nobody until their leases expire (which would also spend an attempt)."""

from __future__ import annotations

from typing import Any

import quick_queue as qq
from quick_queue.core.pointers import scan_due
from quick_queue.kv import retries
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.models import to_us

RUNS: list[tuple[str, int]] = []


@qq.job(topic="unknown:record")
class Record:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        RUNS.append((meta.job_id, meta.attempt))


def test_visit_after_a_committed_1021_runs_the_jobs_at_once(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    RUNS.clear()
    faulty = FaultyDatabase(db, seed=1)
    queue = qq.JobQueue(faulty, jobs=[Record], clock=clock)
    ids = [queue.enqueue("t", "unknown:record", {"n": n}) for n in range(3)]
    due, _ = db.transact(scan_due, queue.layout, to_us(clock.now()), 10)
    assert [tenant for _, tenant in due] == ["t"]

    # Every commit from here on reports 1021 after really committing, until the first run.
    faulty.set_rates(unknown_result=1.0)
    original = Record.perform

    def perform(self: Record, payload: Any, meta: qq.JobMeta) -> None:
        faulty.set_rates(unknown_result=0.0)
        original(self, payload, meta)

    Record.perform = perform  # type: ignore[method-assign]
    try:
        summary = queue.drain(concurrency=1, timeout=30)
    finally:
        Record.perform = original  # type: ignore[method-assign]

    assert faulty.injected["unknown_result"] >= 1
    assert sorted(RUNS) == sorted((job_id, 1) for job_id in ids)  # once each, first attempt
    assert summary.completed == 3
    assert all(queue.get_job("t", job_id) is None for job_id in ids)


def test_a_completion_whose_commit_reply_was_lost_is_reported_completed(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    """The settle commits, then says 1021; its retry finds the job gone. Before: the worker
    logged 'cancelled ... while it ran; its result was dropped' for a job it had completed."""
    RUNS.clear()
    faulty = FaultyDatabase(db, seed=2)
    queue = qq.JobQueue(faulty, jobs=[Record], clock=clock)
    job_id = queue.enqueue("t", "unknown:record", {})
    kinds: list[str] = []
    queue.events.subscribe(lambda event: kinds.append(str(event.kind)))
    original = Record.perform

    def perform(self: Record, payload: Any, meta: qq.JobMeta) -> None:
        original(self, payload, meta)
        faulty.set_rates(unknown_result=1.0)  # the settle's commit: committed, then 1021

    def once(code: int) -> None:  # one lost reply: the retry commits normally
        if code == 1021:
            faulty.set_rates(unknown_result=0.0)

    Record.perform = perform  # type: ignore[method-assign]
    retries.listen(once)
    try:
        summary = queue.drain(concurrency=1, timeout=30)
    finally:
        retries.unlisten(once)
        Record.perform = original  # type: ignore[method-assign]
        faulty.set_rates(unknown_result=0.0)
    assert faulty.injected["unknown_result"] >= 1
    assert RUNS == [(job_id, 1)]
    assert summary.completed == 1 and "cancelled" not in kinds, kinds
    assert queue.get_job("t", job_id) is None
