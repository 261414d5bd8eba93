"""Enqueue's fast path (issue 10): a job under an id made for the call (no ``key=``) is written
without looking for an earlier copy, except when a retry follows a commit_unknown_result
(1021), where the first attempt may have committed: then the retry finds the job and writes
nothing, so a job leased in between is never reset and is counted once."""

from __future__ import annotations

from typing import Any

import quick_queue as qq
from quick_queue.core.admin import topic_counters
from quick_queue.core.dequeue import dequeue
from quick_queue.core.enqueue import NewJob, enqueue, enqueue_many
from quick_queue.keys import Layout
from quick_queue.kv.api import Transaction
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.models import JobRecord

T0 = 1_800_000_000_000_000
LAYOUT = Layout("fast")


def fresh_job(job_id: str, tenant: str = "t") -> NewJob:
    return NewJob(tenant, job_id, "mail", b'{"n":1}', 100, 3, T0, fresh=True)


def lease_all(db: qq.Database, tenant: str = "t") -> int:
    def visit(tr: Transaction) -> int:
        return len(dequeue(tr, LAYOUT, tenant, None, T0, count=10, item_lease=30_000_000,
                           promote_max=10, min_inactive=1, new_token=lambda: "tok"))
    return db.transact(visit)


def ready_entries(db: qq.Database, tenant: str = "t") -> int:
    ready = LAYOUT.zone(tenant).ready
    return len(db.transact(lambda tr: tr.get_range(ready, ready + b"\xff")))


def enqueued(db: qq.Database) -> int:
    counters = db.transact(lambda tr: topic_counters(tr.snapshot, LAYOUT))
    return int(counters.get("mail", {}).get("enqueued", 0))


def state_of(db: qq.Database, job_id: str, tenant: str = "t") -> str | None:
    raw = db.transact(lambda tr: tr.get(LAYOUT.zone(tenant).item(job_id)))
    return None if raw is None else JobRecord.decode(job_id, raw).state


def run_with_one_unknown_result(db: qq.Database, fn: Any, between: Any) -> Any:
    """``db.transact(fn)`` whose first commit really commits and then reports 1021;
    ``between()`` runs after that commit, before the retry (a consumer taking the job)."""
    faulty = FaultyDatabase(db, seed=3)
    calls = []

    def attempt(tr: Transaction) -> Any:
        calls.append(1)
        if len(calls) == 1:
            faulty.set_rates(unknown_result=1.0)
        else:
            faulty.set_rates(unknown_result=0.0)
            between()
        return fn(tr)

    result = faulty.transact(attempt)
    assert faulty.injected["unknown_result"] == 1 and len(calls) == 2
    return result


def test_a_retry_after_a_committed_1021_does_not_enqueue_twice(db: qq.Database) -> None:
    job = fresh_job("j1")
    run_with_one_unknown_result(
        db, lambda tr: enqueue(tr, LAYOUT, job, T0, 0), lambda: lease_all(db)
    )
    assert state_of(db, "j1") == "l"  # the lease taken in between was not undone
    assert enqueued(db) == 1
    assert ready_entries(db) == 0  # and no second copy is ready


def test_enqueue_many_retry_after_a_committed_1021_does_not_enqueue_twice(
    db: qq.Database,
) -> None:
    jobs = [fresh_job(f"j{n}") for n in range(3)]
    run_with_one_unknown_result(
        db, lambda tr: enqueue_many(tr, LAYOUT, jobs, T0, 0), lambda: lease_all(db)
    )
    assert [state_of(db, f"j{n}") for n in range(3)] == ["l", "l", "l"]
    assert enqueued(db) == 3 and ready_entries(db) == 0


def test_a_fresh_id_is_written_without_looking_for_an_earlier_copy(db: qq.Database) -> None:
    # Only a colliding id (which a made id never is) can show the read is skipped: the keyed
    # path finds the job there and leaves it; the fresh path writes over it.
    db.transact(enqueue, LAYOUT, fresh_job("j1"), T0, 0)
    lease_all(db)
    checked = NewJob("t", "j1", "mail", b"{}", 100, 3, T0)
    db.transact(enqueue, LAYOUT, checked, T0, 0)
    assert state_of(db, "j1") == "l"
    db.transact(enqueue, LAYOUT, fresh_job("j1"), T0, 0)
    assert state_of(db, "j1") == "r"


def test_queue_enqueue_without_key_survives_a_committed_1021(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    faulty = FaultyDatabase(db, seed=5)
    queue = qq.JobQueue(faulty, clock=clock)
    # half the commits report 1021 after really committing: each retry must find its job
    faulty.set_rates(unknown_result=0.5)
    ids = [queue.enqueue("acme", "mail", {"n": n}) for n in range(20)]
    faulty.set_rates(unknown_result=0.0)
    assert faulty.injected["unknown_result"] > 0
    stats = queue.stats()
    assert stats.ready == 20 == len(set(ids))
    counters = db.transact(lambda tr: topic_counters(tr.snapshot, queue.layout))
    assert counters["mail"]["enqueued"] == 20
