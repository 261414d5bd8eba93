"""Worker processes that die or stall mid-job lose no job, and run none twice at once.

Each test runs real consumer processes (``workers/proc_jobs.py``) on one SQLite file. Instead
of waiting the 30 s item lease out, the test rewrites the leased job's stored expiry to the
present (``workers/storetime.py``) once the worker is dead or stopped: the store is then in
exactly the state the lease running out would leave it in.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from workers.procs import Worker, events, gone, process_state, wait_for
from workers.storetime import expire_lease, lease_extended

import quick_queue as qq

pytestmark = pytest.mark.slow


@pytest.fixture
def queue(file_db: qq.Database) -> qq.JobQueue:
    """The test's own view of the queue: a producer and inspector, with no handlers."""
    return qq.JobQueue(file_db)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "events.log"


def _db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def stop_process_cleanly(worker: Worker, db_path: str) -> None:
    """SIGSTOP ``worker`` at a moment it does not hold the SQLite write lock (a process stopped
    inside a commit would block every other process on the file until it continues)."""
    for _ in range(50):
        worker.signal(signal.SIGSTOP)
        wait_for(lambda: process_state(worker.pid) == "T", 5, "the process to stop")
        try:
            conn = sqlite3.connect(db_path, timeout=0.2, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                return
            finally:
                conn.close()
        except sqlite3.OperationalError:
            worker.signal(signal.SIGCONT)
            time.sleep(0.02)
    raise AssertionError("could not stop the worker outside a commit")


def test_sigkilled_worker_loses_no_job_and_another_runs_it_once(
    db_url: str, queue: qq.JobQueue, log: Path, workers: list[Worker]
) -> None:
    workers += [Worker(db_url, log, extend_every=0.3) for _ in range(2)]
    job_id = queue.enqueue("shop-1", "proc:record", {"block_first": True})

    first = wait_for(lambda: events(log, "start", job_id), what="the job to start")[0]
    wait_for(lambda: lease_extended(queue, "shop-1", job_id), what="a lease extension")
    victim = next(w for w in workers if w.pid == first["pid"])
    survivor = next(w for w in workers if w is not victim)
    victim.kill()  # SIGKILL, mid-job

    info = queue.get_job("shop-1", job_id)
    assert info is not None and info.state == "leased" and info.attempt == 1
    assert expire_lease(queue, "shop-1", job_id)  # the 30 s lease runs out

    wait_for(lambda: queue.get_job("shop-1", job_id) is None, what="the job to complete")
    starts = events(log, "start", job_id)
    ends = events(log, "end", job_id)
    assert [(s["attempt"], s["pid"]) for s in starts] == [(1, victim.pid), (2, survivor.pid)]
    assert [(e["attempt"], e["pid"]) for e in ends] == [(2, survivor.pid)]  # exactly once

    summary = survivor.stop()
    assert summary is not None
    assert summary["completed"] == 1 and summary["stale"] == 0
    counters = queue.stats().topics["proc:record"]
    assert counters["completed"] == 1
    assert counters["lease_expired"] == 1


@pytest.mark.sqlite_only("SIGSTOPs the worker outside a commit by probing the SQLite write lock")
def test_stopped_worker_loses_its_lease_and_its_late_completion_is_stale(
    db_url: str, queue: qq.JobQueue, log: Path, workers: list[Worker]
) -> None:
    workers += [Worker(db_url, log, extend_every=0.3) for _ in range(2)]
    job_id = queue.enqueue("shop-1", "proc:record", {"block_first": True})

    first = wait_for(lambda: events(log, "start", job_id), what="the job to start")[0]
    wait_for(lambda: lease_extended(queue, "shop-1", job_id), what="a lease extension")
    stalled = next(w for w in workers if w.pid == first["pid"])
    other = next(w for w in workers if w is not stalled)
    stop_process_cleanly(stalled, _db_path(db_url))
    assert expire_lease(queue, "shop-1", job_id)

    wait_for(lambda: queue.get_job("shop-1", job_id) is None, what="the other worker")
    assert [e["pid"] for e in events(log, "end", job_id)] == [other.pid]

    stalled.signal(signal.SIGCONT)
    # Its keeper tries to extend, learns the lease is gone and sets meta.lease_lost; the
    # handler (waiting on it) returns, and its completion is rejected.
    late = wait_for(
        lambda: [e for e in events(log, "end", job_id) if e["pid"] == stalled.pid],
        what="the stalled handler to notice its lost lease",
    )
    assert late[0]["lease_lost"] is True and late[0]["attempt"] == 1
    stalled_summary = stalled.stop()
    assert stalled_summary is not None
    assert stalled_summary["stale"] == 1 and stalled_summary["completed"] == 0
    assert stalled_summary["extra"].get("leases_lost") == 1
    other_summary = other.stop()
    assert other_summary is not None and other_summary["completed"] == 1
    assert queue.get_job("shop-1", job_id) is None
    assert queue.stats().topics["proc:record"]["completed"] == 1


def test_job_that_kills_its_process_ends_dead_after_max_retries_and_supervisor_survives(
    db_url: str, queue: qq.JobQueue, log: Path, workers: list[Worker]
) -> None:
    supervisor = Worker(db_url, log, processes=2, concurrency=2)
    workers.append(supervisor)
    job_id = queue.enqueue("shop-1", "proc:exit", {}, max_retries=1)

    def started(attempt: int) -> list[dict[str, Any]]:
        return [e for e in events(log, "start", job_id) if e["attempt"] == attempt]

    def dead() -> qq.JobInfo | None:
        info = queue.get_job("shop-1", job_id)
        return info if info is not None and info.state == "dead" else None

    for attempt in (1, 2):  # max_retries=1: two runs, each killing its process
        pid = wait_for(partial(started, attempt), what=f"attempt {attempt}")[0]["pid"]
        wait_for(partial(gone, pid), what="the process to die")
        assert expire_lease(queue, "shop-1", job_id)

    info = wait_for(dead, what="the dead letter")
    assert info is not None
    assert info.dead_kind == "lease_expired"
    assert info.attempt == 2
    assert "lease expired" in (info.reason or "")
    assert len(events(log, "start", job_id)) == 2
    assert [d.job_id for d in queue.dead_letters("shop-1")] == [job_id]

    # The supervisor restarted its children: the queue still works.
    assert supervisor.proc.poll() is None
    ok = queue.enqueue("shop-2", "proc:record", {})
    wait_for(lambda: events(log, "end", ok), what="a job after the crashes")
    supervisor.stop()
