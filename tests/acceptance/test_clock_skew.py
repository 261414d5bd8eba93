"""Worker processes with wrong wall clocks (issue 8, item 8): a worker 5 minutes ahead does not
take another worker's running job; a worker whose clock steps back an hour keeps extending its
leases; one whose clock steps forward an hour does not re-lease its own running job. In every
case no job runs twice at once (checked from the true start and end times the handlers log).

The skew is real to the worker: ``time.time`` is patched in its process before quick_queue is
imported (``workers/skewed.py``); its monotonic and boot clocks are untouched, as a real clock
step leaves them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from workers.procs import wait_for
from workers.skewed_proc import SkewedWorker, overlaps, read_runs

import quick_queue as qq

pytestmark = pytest.mark.slow

HOUR = 3600.0
WORK = 3.0  # seconds each watched job runs: several lease periods


@pytest.fixture
def workers() -> Iterator[list[SkewedWorker]]:
    started: list[SkewedWorker] = []
    yield started
    for worker in started:
        worker.close()


def _started(log: Path, job_id: str, count: int = 1) -> bool:
    return len([r for r in read_runs(log) if r.job == job_id]) >= count


def _check_one_run(log: Path, job_id: str, queue: qq.JobQueue) -> None:
    wait_for(lambda: queue.get_job("t", job_id) is None, timeout=20, what="the job to finish")
    runs = [r for r in read_runs(log) if r.job == job_id]
    assert len(runs) == 1, runs  # before the fix: a second run, beside the first
    assert runs[0].end is not None
    assert overlaps(read_runs(log), until=time.time()) == []


def test_a_worker_five_minutes_ahead_does_not_take_a_running_job(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[SkewedWorker]
) -> None:
    log = tmp_path / "runs.log"
    queue = qq.JobQueue(file_db)
    job_id = queue.enqueue("t", "skew:work", {"work": WORK})
    workers.append(SkewedWorker(db_url, log, "honest", item_lease=2))
    wait_for(lambda: _started(log, job_id), what="the honest worker to start the job")
    ahead = SkewedWorker(db_url, log, "ahead", offset=300, item_lease=2)
    workers.append(ahead)
    assert ahead.started_wall - time.time() > 290  # its clock really is 5 minutes ahead
    _check_one_run(log, job_id, queue)
    summaries = [worker.stop() for worker in workers]
    assert sum(s["completed"] for s in summaries) == 1
    assert sum(s["stale"] for s in summaries) == 0


@pytest.mark.parametrize("step", [-HOUR, +HOUR], ids=["back", "forward"])
def test_a_worker_whose_clock_steps_mid_run_keeps_its_job_to_itself(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[SkewedWorker], step: float
) -> None:
    # back: before the fix its keeper waited an hour for the next extension, and the other
    # worker re-ran the job; forward: it saw its own lease expired and ran the job again.
    log = tmp_path / "runs.log"
    queue = qq.JobQueue(file_db)
    job_id = queue.enqueue("t", "skew:work", {"work": WORK})
    stepping = SkewedWorker(db_url, log, "stepping", item_lease=1)
    workers.append(stepping)
    wait_for(lambda: _started(log, job_id), what="the job to start")
    workers.append(SkewedWorker(db_url, log, "other", item_lease=1))
    stepping.step(step)
    _check_one_run(log, job_id, queue)
    assert [r.pid for r in read_runs(log)] == [stepping.pid]
    later = queue.enqueue("t", "skew:work", {"work": 0})  # both still work after the step
    wait_for(lambda: queue.get_job("t", later) is None, timeout=20, what="a job after the step")
    summaries = [worker.stop() for worker in workers]
    assert sum(s["completed"] for s in summaries) == 2
    assert sum(s["stale"] for s in summaries) == 0


@pytest.mark.sqlite_only("counts the SQLite file's clock-anchor rows; FoundationDB's store time "
                         "comes from read versions (tests/kv/test_store_clock.py)")
def test_a_store_anchored_by_a_worker_an_hour_behind_still_runs_jobs_when_due(
    db_url: str, tmp_path: Path, workers: list[SkewedWorker]
) -> None:
    # The first process to read the store's time anchors it on its wall clock; here that is
    # a worker an hour behind. Producers' due times are on the store's time too (JobQueue's
    # default clock), so a job due now runs now (before: "due" an hour from the store's view).
    log = tmp_path / "runs.log"
    path = db_url.removeprefix("sqlite:///")
    qq.open(db_url).close()
    workers.append(SkewedWorker(db_url, log, "behind", offset=-HOUR))
    wait_for(lambda: _anchor_rows(path) == 3, what="the worker to anchor the store's time")
    with qq.open(db_url) as db:
        queue = qq.JobQueue(db)
        now_job = queue.enqueue("t", "skew:work", {"work": 0})
        soon_job = queue.enqueue("t", "skew:work", {"work": 0}, in_=1.0)
        wait_for(lambda: queue.get_job("t", now_job) is None, timeout=10, what="the due job")
        info = queue.get_job("t", soon_job)
        assert info is None or info.state in ("scheduled", "leased")
        wait_for(lambda: queue.get_job("t", soon_job) is None, timeout=10, what="the later job")
    assert workers[0].stop()["completed"] == 2


def _anchor_rows(path: str) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT count(*) FROM qq_meta WHERE name LIKE 'clock.%'").fetchone()
        return int(row[0])
    finally:
        conn.close()
