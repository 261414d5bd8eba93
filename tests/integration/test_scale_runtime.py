"""Issue 14, the runtime's side of byte-cut batches: the settler and the lease keeper take a
batch their transaction did not finish (its byte budget reached) into the next transaction at
once, so every outcome is settled and every lease extended however small the budget.

The budget is shrunk to one byte here so each transaction takes a single item (the sizes
themselves are tested with 20 kB payloads in ``test_scale_batches``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer import keeper, settler
from quick_queue.consumer.executor import make_meta
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.context import QueueContext
from quick_queue.events import EventStream
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.settings import Settings
from tests.support.corekit import ITEM_LEASE, US, Core

QueueFactory = Callable[..., qq.JobQueue]


def test_settler_settles_every_outcome_of_a_batch_cut_to_one_per_transaction(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settler, "BATCH_BYTES", 1)

    @qq.job(topic="flaky", max_retries=3)
    class Flaky:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Error | None:
            return qq.Error("not yet") if payload["fail"] else None

    queue = make_queue(Flaky)
    ids = [queue.enqueue(f"t{i % 3}", "flaky", {"fail": i % 2 == 0, "pad": "x" * 2000})
           for i in range(40)]
    summary = queue.drain(concurrency=8)
    assert summary.completed == 20 and summary.retried == 20, summary
    for i, job_id in enumerate(ids):
        info = queue.get_job(f"t{i % 3}", job_id)
        if i % 2:
            assert info is None
        else:
            assert info is not None and (info.state, info.attempt, info.last_error) == (
                "scheduled", 1, "not yet")


def test_keeper_extends_every_lease_when_each_transaction_takes_one(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keeper, "BATCH_BYTES", 1)
    started, release = threading.Semaphore(0), threading.Event()

    @qq.job(topic="long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.release()
            release.wait(10)
            assert not meta.lease_lost.is_set()

    worker = make_queue(Long)
    ids = [worker.enqueue("t", "long", {"pad": "x" * 20_000}) for _ in range(12)]
    drain = background(worker.drain, 12)
    for _ in ids:
        assert started.acquire(timeout=5)
    clock.advance(20)
    expected = clock.now() + 30

    def all_extended() -> bool:
        infos = [worker.get_job("t", job_id) for job_id in ids]
        return all(i is not None and i.lease_expires_at is not None
                   and i.lease_expires_at.timestamp() == expected for i in infos)

    wait_until(all_extended, what="the keeper to extend all 12 leases")
    clock.advance(15)  # past the first lease: nobody else may take the jobs
    assert make_queue(Long).drain().completed == 0
    release.set()
    summary = drain.result()
    assert summary.completed == 12 and summary.stale == 0


def test_a_failed_extension_chunk_leaves_the_other_chunks_extended(
    db: qq.Database, clock: qq.ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three chunks of two leases (20 kB jobs); the middle chunk's commit times out (1031,
    not committed: seeded fault injection over the real engine). The chunks before and after
    it are extended all the same, and the next round extends the middle one in time."""
    monkeypatch.setattr(keeper, "EXTEND_CHUNK", 2)
    faulty = FaultyDatabase(db, seed=53)  # seed 53: commit 2 of 3 fails, not committed
    context = QueueContext(faulty, "default", Settings(), clock)
    core = Core(db, context.layout)
    start = _us_now(clock)
    core.enqueue_jobs([core.job("t", start, payload="x" * 20_000) for _ in range(6)], start)
    jobs = core.take("t", start, count=6)
    assert jobs is not None and len(jobs) == 6
    inflight, events = InFlight(8), EventStream()
    for job in jobs:
        inflight.add(Running(job, make_meta(job), None))
    keeper_ = keeper.Keeper(context, inflight, settler.Settler(context, inflight, events),
                            events, on_overrun=lambda: None)

    def expiries() -> list[int]:
        leased = {job_id: at for _, at, job_id in core.store().leased}
        return [leased[job.record.job_id] for job in jobs]

    clock.advance(10)
    faulty.set_rates(timed_out=0.5)
    keeper_.extend_all()
    assert faulty.log == [("timed_out", False)]
    first, later = start + ITEM_LEASE, _us_now(clock) + ITEM_LEASE
    assert expiries() == [later, later, first, first, later, later]
    faulty.set_rates(timed_out=0.0)
    clock.advance(10)  # the next round: well before the failed chunk's leases end
    keeper_.extend_all()
    assert expiries() == [_us_now(clock) + ITEM_LEASE] * 6
    assert not any(job.meta.lease_lost.is_set() for job in inflight.entries.values())


def _us_now(clock: qq.ManualClock) -> int:
    return round(clock.now() * US)
