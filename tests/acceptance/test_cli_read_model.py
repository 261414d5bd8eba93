"""One read model: ``JobQueue.stats()`` and ``quick-queue inspect --json`` give the same numbers
for one store at one instant (issue 8 item 7: they used to disagree on due zones and the
oldest due job's wait), and the overview stays bounded however many zones there are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import quick_queue as qq
from quick_queue import cli_support, read_model
from quick_queue.cli import app
from quick_queue.core.dequeue import dequeue
from quick_queue.models import to_us

ITEM_LEASE = 30.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> qq.ManualClock:
    """One clock for the test's queue and the CLI's, so both look at the same instant."""
    manual = qq.ManualClock()
    monkeypatch.setattr(cli_support, "CLOCK", manual)
    return manual


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/q.db"


@pytest.fixture
def queue(url: str, clock: qq.ManualClock) -> Iterator[qq.JobQueue]:
    db = qq.open(url, clock=clock)  # the store's time too: leases and due times agree
    yield qq.JobQueue(db, clock=clock, max_retries=0, item_lease=ITEM_LEASE)
    db.close()


def lease(queue: qq.JobQueue, tenant: str, item_lease: float) -> int:
    """Lease the zone's ready jobs as a worker would (and then leave them running)."""
    tokens = iter(range(1_000_000))
    jobs = queue.db.transact(
        dequeue, queue.layout, tenant, None, to_us(queue.clock.now()), count=10,
        item_lease=to_us(item_lease), promote_max=100, min_inactive=to_us(30),
        new_token=lambda: f"t{next(tokens)}",
    )
    return len(jobs)


def inspect_json(url: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["inspect", "--db", url, "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def build_store(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    """Zones in every state: dead letters, ready jobs, scheduled ones (one overdue), leases
    running and expired."""

    @queue.job(topic="boom", max_retries=0)
    class Boom:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            raise RuntimeError("no")

    @queue.job(topic="work")
    class Work:  # registered, never run here: its jobs stay where the test puts them
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            return None

    queue.enqueue("doomed", "boom", {})
    queue.enqueue("doomed", "boom", {})
    assert queue.drain().dead == 2
    queue.enqueue("due", "work", {"n": 1})
    clock.advance(1)
    queue.enqueue("due", "work", {"n": 2}, priority=5)
    queue.enqueue("later", "work", {}, in_=600)
    queue.enqueue("overdue", "work", {}, in_=2)  # overdue once the clock passes it
    queue.enqueue("busy", "work", {})
    queue.enqueue("busy", "work", {})
    assert lease(queue, "busy", ITEM_LEASE) == 2
    queue.enqueue("crashed", "work", {})
    assert lease(queue, "crashed", 1.0) == 1  # its worker "died": the lease runs out
    clock.advance(4)


def test_stats_and_inspect_agree_field_by_field(
    queue: qq.JobQueue, clock: qq.ManualClock, url: str
) -> None:
    build_store(queue, clock)
    stats = queue.stats().to_dict()
    data = inspect_json(url)
    assert {name: data[name] for name in stats} == stats
    # and the numbers are the right ones, not merely the same
    assert (stats["ready"], stats["scheduled"], stats["leased"], stats["dead"]) == (2, 2, 3, 2)
    assert stats["zones"] == 6  # every zone with a pointer ("doomed"'s is collected later)
    # due: "due" (ready), "overdue" (its time has come), "crashed" (its lease ran out)
    assert stats["due_zones"] == 3
    assert stats["oldest_due_age_seconds"] == 5.0  # the first "due" job, enqueued 5 s ago
    assert stats["topics"]["boom"] == {"enqueued": 2, "failed": 2, "dead": 2}
    assert data["zones_with_jobs"] == 5  # all but "doomed"
    assert [z["tenant"] for z in data["zone_list"]][:2] == ["due", "busy"]  # deepest first


def test_stats_match_the_overview_of_the_read_model(
    queue: qq.JobQueue, clock: qq.ManualClock
) -> None:
    build_store(queue, clock)
    view = read_model.overview(queue, queue.name)
    assert view.stats == read_model.queue_stats(queue) == queue.stats()
    assert [j.tenant for j in view.expiring] == ["crashed"]  # the expired lease, not "busy"


def test_the_overview_keeps_only_the_deepest_zones(queue: qq.JobQueue, url: str) -> None:
    for n in range(30):
        queue.enqueue_many([(f"t{n:02d}", "work", {})] * (n % 7 + 1))
    view = read_model.overview(queue, queue.name, zone_limit=3)
    assert [(z.tenant, z.ready) for z in view.zones] == [("t06", 7), ("t13", 7), ("t20", 7)]
    assert view.zones_with_jobs == 30 and view.stats.zones == 30
    data = inspect_json(url, "--zones", "2")
    assert [z["tenant"] for z in data["zone_list"]] == ["t06", "t13"]
    assert data["zones_with_jobs"] == 30 and data["ready"] == sum(n % 7 + 1 for n in range(30))


def test_counters_are_read_in_chunks_and_all_of_them(queue: qq.JobQueue, url: str) -> None:
    topics = [f"topic-{n:04d}" for n in range(read_model.CHUNK + 200)]  # more keys than a chunk
    queue.enqueue_many([("acme", topic, {}) for topic in topics])
    counters = queue.stats().topics
    assert counters == {topic: {"enqueued": 1} for topic in topics}
    assert inspect_json(url)["topics"] == counters
