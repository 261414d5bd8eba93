"""The queue context: ``with_db`` (the same queue on another connection) and seeded runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import quick_queue as qq
from tests.conftest import QueueFactory


@qq.job(topic="ctx:fail", max_retries=3, backoff_base=10.0)
class Fail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("no")


@qq.job(topic="ctx:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def test_with_db_is_the_same_queue_on_another_connection(
    tmp_path: Path, clock: qq.ManualClock
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    first, second = qq.open(url, clock=clock), qq.open(url, clock=clock)
    try:
        queue = qq.JobQueue(first, name="shop", jobs=[Ok], clock=clock, max_retries=7, seed=3)
        other = queue.with_db(second)
        assert other is not queue and other.db is second and queue.db is first
        assert other.name == "shop" and other.clock is clock
        assert other.settings == queue.settings and other.settings.max_retries == 7
        assert other.registry.topics() == ["ctx:ok"]
        assert other.context.seed == 3
        job_id = queue.enqueue("t", "ctx:ok", {})
        assert other.drain(concurrency=1, timeout=10).completed == 1  # one store, two connections
        assert queue.get_job("t", job_id) is None
    finally:
        first.close()
        second.close()


def _retry_due(make_queue: QueueFactory, db: qq.Database, seed: int | None) -> float:
    queue = make_queue(Fail, db=db, seed=seed)
    job_id = queue.enqueue("t", "ctx:fail", {})
    assert queue.drain(concurrency=1, timeout=10).retried == 1
    info = queue.get_job("t", job_id)
    assert info is not None and info.due_at is not None
    return info.due_at.timestamp()


def test_a_seed_replays_the_backoff_jitter(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    dues = []
    for seed in (11, 11, 12):
        database = qq.open("memory://", clock=clock)  # the consumer's time: the store's
        try:
            dues.append(_retry_due(make_queue, database, seed))
        finally:
            database.close()
    assert dues[0] == dues[1]  # same seed, same jitter
    assert dues[0] != dues[2]
