"""Flow control with real worker processes on one SQLite file (issue 13): a periodic schedule
ticked by three racing workers, one of them SIGKILLed, enqueues exactly one job per tick; a
paused tenant and a paused topic start nothing, and everything runs after resume."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from workers.procs import Worker, events, wait_for
from workers.rate_check import check_rate

import quick_queue as qq
from quick_queue.core import pauses
from quick_queue.core.pointers import read_pointer
from quick_queue.producer import job_id_for_key

pytestmark = pytest.mark.slow
EVERY = 1.0


def test_three_workers_one_killed_run_one_job_per_tick(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.periodic("beat", every=EVERY, tenant="t", topic="proc:record", payload={})
    created = file_db.store_time()
    workers += [Worker(db_url, log, concurrency=2) for _ in range(3)]

    def ticks() -> set[str]:
        return {e["job"] for e in events(log, "start")}

    wait_for(lambda: len(ticks()) >= 2, timeout=20, what="two ticks")
    workers[0].kill()  # SIGKILL: the others keep ticking, and never tick twice
    seen_at_kill = len(ticks())
    wait_for(lambda: len(ticks()) >= seen_at_kill + 4, timeout=20, what="four more ticks")
    queue.remove_periodic("beat")
    for worker in workers[1:]:
        worker.stop()

    starts = events(log, "start")
    assert all(e["attempt"] == 1 for e in starts)
    assert max(Counter(e["job"] for e in starts).values()) == 1  # no tick twice
    # the ticks started are consecutive multiples of EVERY: none skipped, none repeated
    first = int(created // EVERY) + 1
    index = {job_id_for_key(f"periodic:beat:{round((first + k) * EVERY * 1e6)}"): k
             for k in range(200)}
    done = sorted(index[e["job"]] for e in starts)
    assert done == list(range(done[0], done[0] + len(done)))
    assert len({e["pid"] for e in starts}) >= 2  # ticked by more than one worker


def test_paused_tenant_and_topic_start_nothing_until_resumed(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.pause(tenant="p")
    queue.pause(topic="proc:record")
    held = queue.enqueue_many(
        [("p", "proc:record", {"n": n}) for n in range(10)]
        + [("q", "proc:record", {"n": n}) for n in range(10)]
    )
    # jobs of no handler, interleaved in q's zone: their dead letters prove the workers
    # visited the zone (and set its paused jobs aside) meanwhile
    probes = queue.enqueue_many([("q", "proc:none", {"n": n}) for n in range(5)])
    workers.append(Worker(db_url, log, processes=2, concurrency=3))
    wait_for(lambda: len(queue.dead_letters("q")) == len(probes), timeout=20, what="probes")
    wait_for(lambda: queue.db.transact(read_pointer, queue.layout, "p").vesting
             == pauses.PARKED, timeout=20, what="the paused tenant's zone parked")
    assert events(log, "start") == []
    stats = queue.stats()
    assert (stats.ready + stats.scheduled, stats.leased) == (20, 0)

    queue.resume(topic="proc:record")
    wait_for(lambda: len(events(log, "end")) >= 10, timeout=20, what="q's jobs")
    assert {e["tenant"] for e in events(log, "start")} == {"q"}  # p is still paused
    queue.resume(tenant="p")
    wait_for(lambda: len(events(log, "end")) >= 20, timeout=20, what="p's jobs")
    workers[0].stop()
    starts = events(log, "start")
    assert Counter(e["job"] for e in starts) == Counter(dict.fromkeys(held, 1))
    assert all(e["attempt"] == 1 for e in starts)


def test_a_killed_workers_job_of_a_paused_topic_waits_for_resume(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """SIGKILL a worker mid-job, pause the job's topic: when the lease runs out the job comes
    back, the surviving worker sets it aside instead of starting it, and it runs on resume."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    job_id = queue.enqueue("t", "proc:record", {"block_first": True})
    workers.append(Worker(db_url, log, concurrency=2, item_lease=1.0))
    wait_for(lambda: events(log, "start", job_id), timeout=20, what="the first attempt")
    queue.pause(topic="proc:record")
    workers[0].kill()
    workers.append(Worker(db_url, log, concurrency=2, item_lease=1.0))

    def set_aside() -> bool:
        info = queue.get_job("t", job_id)
        return info is not None and info.state == "scheduled"

    wait_for(set_aside, timeout=20, what="the expired lease set aside")
    assert len(events(log, "start", job_id)) == 1
    queue.resume(topic="proc:record")
    wait_for(lambda: events(log, "end", job_id), timeout=20, what="the second attempt")
    workers[1].stop()
    assert [e["attempt"] for e in events(log, "start", job_id)] == [1, 2]


def _peak(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_a_cap_holds_across_processes_and_a_killed_workers_slot_comes_back(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.set_max_running("proc:record", 2)
    ids = queue.enqueue_many([("t", "proc:record", {"work": 0.2}) for _ in range(12)])
    workers += [Worker(db_url, log, concurrency=4, item_lease=1.0) for _ in range(2)]
    wait_for(lambda: len(events(log, "end")) >= 3, timeout=20, what="three jobs")
    workers[0].kill()
    killed_at = time.time()
    wait_for(lambda: {e["job"] for e in events(log, "end")} >= set(ids), timeout=30,
             what="every job")
    workers[1].stop()
    ends = {(e["job"], e["attempt"]): e["t"] for e in events(log, "end")}
    intervals = [(e["t"], ends.get((e["job"], e["attempt"]), killed_at))
                 for e in events(log, "start")]
    assert _peak(intervals) <= 2
    assert _peak(intervals) == 2  # the cap was reached, not merely respected by accident


def test_a_rate_limit_holds_across_processes(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    """20/s across two processes: no window of one second holds more than 20 leases (each
    lease's store time is its first deadline minus the item lease)."""
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    queue.set_rate_limit("proc:record", "20/s")
    ids = queue.enqueue_many([("t", "proc:record", {}) for _ in range(30)])
    workers += [Worker(db_url, log, concurrency=4, item_lease=5.0) for _ in range(2)]
    wait_for(lambda: len(events(log, "end")) >= len(ids), timeout=30, what="every job")
    for worker in workers:
        worker.stop()
    leased = [e["deadline"] - 5.0 for e in events(log, "start")]
    assert len(leased) == len(ids)
    check_rate(leased, 20)  # never more than 20 in a second, and leased on their turns
