"""Limits declared by handlers (``@job(max_running=2)``, ``@job(rate_limit="20/s")``) and a
per-tenant cap, held across real worker processes on one SQLite file, one of them SIGKILLed
mid-run (issue 13). The producer side declares nothing: the workers publish their handlers'
limits to the store, and every worker enforces them there."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from workers.procs import Worker, events, wait_for
from workers.rate_check import check_rate

import quick_queue as qq

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parent / "workers" / "flow_jobs.py"


def _start(url: str, log: Path, **settings: Any) -> Worker:
    return Worker(url, log, script=SCRIPT, concurrency=4, **settings)


def _peak(starts: list[dict[str, Any]], ends: list[dict[str, Any]], killed_at: float) -> int:
    """The most attempts running at once (an attempt of the killed worker ran until then)."""
    end_of = {(e["job"], e["attempt"]): e["t"] for e in ends}
    edges = sorted([(e["t"], 1) for e in starts]
                   + [(end_of.get((e["job"], e["attempt"]), killed_at), -1) for e in starts])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def _run_with_a_kill(queue: qq.JobQueue, url: str, log: Path, workers: list[Worker],
                     ids: list[str]) -> float:
    workers += [_start(url, log, item_lease=1.0) for _ in range(3)]
    wait_for(lambda: len(events(log, "end")) >= 3, timeout=20, what="three jobs")
    workers[0].kill()  # SIGKILL mid-run: its slots come back when its leases run out
    killed_at = time.time()
    wait_for(lambda: {e["job"] for e in events(log, "end")} >= set(ids), timeout=60,
             what="every job")
    for worker in workers[1:]:
        worker.stop()
    return killed_at


def test_a_declared_cap_holds_across_processes_with_a_sigkill(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)  # no handlers here: the cap comes from the workers' code
    ids = queue.enqueue_many([("t", "proc:capped", {"work": 0.2}) for _ in range(14)])
    killed_at = _run_with_a_kill(queue, db_url, log, workers, ids)
    starts = events(log, "start")
    assert _peak(starts, events(log, "end"), killed_at) == 2  # reached, never passed
    assert queue.stats().dead == 0


def test_a_tenant_cap_holds_across_processes_with_a_sigkill(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.set_tenant_max_running("a", 3)
    ids = queue.enqueue_many([("a", "proc:record", {"work": 0.2}) for _ in range(14)]
                             + [("b", "proc:record", {"work": 0.2}) for _ in range(6)])
    killed_at = _run_with_a_kill(queue, db_url, log, workers, ids)
    starts, ends = events(log, "start"), events(log, "end")
    assert _peak([e for e in starts if e["tenant"] == "a"], ends, killed_at) == 3
    assert _peak([e for e in starts if e["tenant"] == "b"], ends, killed_at) > 1  # uncapped


def test_a_declared_rate_holds_across_processes(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """20/s declared by the handler, two processes: no window of one second holds more than
    20 leases (a lease's store time is its first deadline minus the item lease)."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    ids = queue.enqueue_many([("t", "proc:paced", {}) for _ in range(30)])
    workers += [_start(db_url, log, item_lease=5.0) for _ in range(2)]
    wait_for(lambda: len(events(log, "end")) >= len(ids), timeout=30, what="every job")
    for worker in workers:
        worker.stop()
    leased = [e["deadline"] - 5.0 for e in events(log, "start")]
    assert len(leased) == len(ids)
    check_rate(leased, 20)  # never more than 20 in a second, and leased on their turns


def test_a_fan_in_child_runs_once_after_every_parent_with_a_sigkill(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """Ten parents over two tenants, a child waiting for all of them; a worker is SIGKILLed
    mid-run, its parents come back when their leases run out: the child starts once, after
    the last parent ended."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    parents = [("a" if n % 2 else "b", queue.enqueue("a" if n % 2 else "b", "proc:record",
                                                    {"work": 0.3})) for n in range(10)]
    child = queue.enqueue("a", "proc:record", {}, after=parents)
    workers += [_start(db_url, log, item_lease=1.0) for _ in range(2)]
    wait_for(lambda: len(events(log, "start")) >= 3, timeout=20, what="three parents started")
    workers[0].kill()
    wait_for(lambda: events(log, "end", child), timeout=60, what="the child")
    workers[1].stop()
    [start] = events(log, "start", child)
    last_parent_end = max(max(e["t"] for e in events(log, "end", job_id))
                          for _, job_id in parents)
    assert start["t"] >= last_parent_end and start["attempt"] == 1
    assert queue.stats().dead == 0


def test_a_tenant_rate_holds_across_processes(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """A tenant limited to 20/s over two processes: no second holds more than 20 of its
    leases; another tenant's jobs are not held back."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.set_tenant_rate_limit("slow", "20/s")
    slow = queue.enqueue_many([("slow", "proc:record", {}) for _ in range(30)])
    fast = queue.enqueue_many([("fast", "proc:record", {}) for _ in range(30)])
    workers += [_start(db_url, log, item_lease=5.0) for _ in range(2)]
    wait_for(lambda: len(events(log, "end")) >= len(slow) + len(fast), timeout=30,
             what="every job")
    for worker in workers:
        worker.stop()
    starts = events(log, "start")
    leased = [e["deadline"] - 5.0 for e in starts if e["tenant"] == "slow"]
    assert len(leased) == len(slow)
    check_rate(leased, 20)
    fast_leased = sorted(e["deadline"] - 5.0 for e in starts if e["tenant"] == "fast")
    assert fast_leased[-1] - fast_leased[0] < 1.0  # all 30 within a second: not limited
