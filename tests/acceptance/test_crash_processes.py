"""Several consumer processes on one SQLite file, on one tenant and on many: every job runs
exactly once, never under an expired lease, and SIGTERM stops them gracefully."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from workers.procs import Worker, events, gone, wait_for

import quick_queue as qq

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["supervisor", "separate"])
@pytest.mark.parametrize(("tenants", "per_tenant"), [(1, 150), (30, 5)], ids=["one", "many"])
def test_processes_run_every_job_exactly_once(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker],
    mode: str, tenants: int, per_tenant: int,
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    jobs = set(queue.enqueue_many([
        {"tenant": f"tenant-{t}", "topic": "proc:record", "payload": {"n": n}}
        for n in range(per_tenant) for t in range(tenants)
    ]))
    if mode == "supervisor":
        workers.append(Worker(db_url, log, processes=2, concurrency=3, dequeue_max=4))
    else:
        workers += [Worker(db_url, log, concurrency=3, dequeue_max=4) for _ in range(2)]

    wait_for(lambda: len(events(log, "end")) >= len(jobs), timeout=30, what="all jobs")
    summaries = [worker.stop() for worker in workers]

    starts = events(log, "start")
    ends = events(log, "end")
    assert Counter(e["job"] for e in starts) == Counter(dict.fromkeys(jobs, 1))
    assert Counter(e["job"] for e in ends) == Counter(dict.fromkeys(jobs, 1))
    assert all(e["attempt"] == 1 and not e["lease_lost"] for e in ends)
    assert all(e["deadline"] > e["t"] for e in starts)  # started under a live lease
    pids = Counter(e["pid"] for e in starts)
    print("jobs per process:", dict(pids))
    if mode == "supervisor":  # run by the forked children, not the supervisor
        assert workers[0].pid not in pids
    if mode == "separate":
        assert sum(s["completed"] for s in summaries if s) == len(jobs)
        assert sum(s["stale"] for s in summaries if s) == 0
    stats = queue.stats()
    assert (stats.ready, stats.scheduled, stats.leased, stats.dead) == (0, 0, 0, 0)
    assert stats.topics["proc:record"]["completed"] == len(jobs)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.sqlite_only("counts 2 children; a spawning supervisor also has multiprocessing's "
                        "resource tracker (tests/fdb/test_fdb_processes.py checks spawned ones)")
def test_consumer_processes_exit_when_their_supervisor_is_killed(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    supervisor = Worker(db_url, tmp_path / "events.log", processes=2, concurrency=2)
    workers.append(supervisor)
    children = wait_for(lambda: len(c := _children(supervisor.pid)) == 2 and c,
                        what="two consumer processes")
    supervisor.kill()  # SIGKILL: it cannot tell its children anything
    # before: both lived on as orphans, taking jobs
    wait_for(lambda: all(gone(c) for c in children), timeout=10, what="the children to exit")


def test_a_supervisor_reports_the_sum_of_its_processes(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.enqueue_many([(f"t{n}", "proc:record", {}) for n in range(12)])
    supervisor = Worker(db_url, log, processes=2, concurrency=2)
    workers.append(supervisor)
    wait_for(lambda: len(events(log, "end")) == 12, what="all jobs")
    summary = supervisor.stop()  # before: None, a supervisor printed no summary
    assert summary is not None and summary["completed"] == 12 and summary["stale"] == 0


def test_a_second_sigterm_exits_at_once(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    job_id = queue.enqueue("t", "proc:record", {"block_first": True})
    worker = Worker(db_url, log, concurrency=1, shutdown_grace=60)
    workers.append(worker)
    wait_for(lambda: events(log, "start", job_id), what="the job to start")
    worker.signal(signal.SIGTERM)  # graceful: the running job would get 60 s
    wait_for(lambda: "shutting down gracefully" in worker.stderr(), what="the first signal")
    worker.signal(signal.SIGTERM)
    assert worker.proc.wait(10) == 128 + signal.SIGTERM  # before: waited out the grace


def test_sigterm_to_the_whole_group_stops_the_children_gracefully(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """A service manager stopping a worker signals its whole process group (systemd's default
    KillMode): each child gets that SIGTERM and its supervisor's stop request, one request."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    job_id = queue.enqueue("t", "proc:record", {"work": 1.0})
    supervisor = Worker(db_url, log, processes=2, concurrency=1, own_group=True)
    workers.append(supervisor)
    wait_for(lambda: events(log, "start", job_id), what="the job to start")
    supervisor.signal_group(signal.SIGTERM)
    assert supervisor.proc.wait(30) == 0, supervisor.stderr()
    # before: the child took its supervisor's forwarded SIGTERM for a second signal and exited
    # at once, the job unfinished under its lease
    assert "second SIGTERM" not in supervisor.stderr()
    [end] = events(log, "end", job_id)
    assert not end["lease_lost"]
    assert qq.JobQueue(file_db).stats().leased == 0
