"""A worker process running async and plain handlers at once is SIGKILLed mid-run and
restarted: no job is lost, and every transactional job's writes land exactly once.

The worker (``workers/async_jobs.py``) runs on a SQLite file with a 2 s item lease, so the
leases the killed process held run out on their own while its replacement runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from workers.procs import Worker, events, wait_for

import quick_queue as qq
from quick_queue.keys import pack

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "workers" / "async_jobs.py"
SETTINGS: dict[str, Any] = {"item_lease": 2.0, "backoff_base": 0.05, "backoff_cap": 0.2}


def _enqueue(queue: qq.JobQueue) -> dict[str, tuple[str, str]]:
    """job id -> (tenant, topic): quick and slow jobs of each kind, over several tenants."""
    jobs = {}
    for n in range(45):
        topic = ("mix:async", "mix:sync", "mix:tx")[n % 3]
        slow = n < 6  # the first two of each kind run long enough to be killed mid-run
        work = (3.0 if topic != "mix:tx" else 1.0) if slow else 0.02 * (n % 4)
        tenant = f"t{n % 5}"
        jobs[queue.enqueue(tenant, topic, {"work": work})] = (tenant, topic)
    return jobs


def _counts(db: qq.Database, jobs: list[str]) -> dict[str, int]:
    def read(tr: qq.Transaction) -> dict[str, int]:
        out = {}
        for job in jobs:
            raw = tr.get(pack(("app", "count", job)))
            out[job] = int.from_bytes(raw, "little") if raw else 0
            assert (tr.get(pack(("app", "done", job))) is None) == (out[job] == 0)
        return out

    return db.transact(read)


def test_a_sigkilled_worker_running_async_and_sync_jobs_loses_nothing(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    jobs = _enqueue(queue)
    victim = Worker(db_url, log, concurrency=6, script=SCRIPT, **SETTINGS)
    workers.append(victim)

    def running_here(kind: str) -> set[str]:
        started = {e["job"] for e in events(log, "start") if e["pid"] == victim.pid
                   and e["kind"] == kind}
        return started - {e["job"] for e in events(log, "end") if e["pid"] == victim.pid}

    # Killed while async and sync handlers run in it at once.
    wait_for(lambda: running_here("async") and running_here("sync"), what="both kinds")
    cut_short = running_here("async") | running_here("sync")
    victim.kill()  # SIGKILL, mid-run

    survivor = Worker(db_url, log, concurrency=6, script=SCRIPT, **SETTINGS)
    workers.append(survivor)

    def finished() -> bool:
        stats = queue.stats()
        return stats.ready + stats.scheduled + stats.leased == 0

    wait_for(finished, timeout=40, what="every job to finish after the restart")
    summary = survivor.stop()
    assert summary is not None and summary["completed"] > 0

    # nothing lost: every job completed, none dead, each one's last run ended
    assert queue.dead_letters() == []
    assert [j for j, (tenant, _) in jobs.items() if queue.get_job(tenant, j)] == []
    ended = {e["job"] for e in events(log, "end")}
    assert ended == set(jobs)
    # the runs the kill cut short ran again, in the restarted worker
    assert cut_short
    for job in cut_short:
        assert any(e["pid"] == survivor.pid for e in events(log, "end", job)), job
    # transactional jobs exactly once, async and sync jobs side by side in one process
    tx_jobs = [j for j, (_, topic) in jobs.items() if topic == "mix:tx"]
    assert {j: c for j, c in _counts(file_db, tx_jobs).items() if c != 1} == {}
    counters = queue.stats().topics
    assert {t: counters[t]["completed"] for t in ("mix:async", "mix:sync", "mix:tx")} == {
        "mix:async": 15, "mix:sync": 15, "mix:tx": 15}
