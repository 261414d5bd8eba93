"""Several consumers (threads) on one queue, on one tenant and on many: without faults every
job runs exactly once and no job ever runs under two live leases; under injected commit
failures (1020, 1021 after commit, 1007) no job is lost."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.kv.faults import FaultyDatabase


@dataclass
class Run:
    job_id: str
    attempt: int
    start_seq: int
    end_seq: int
    start: float  # the consumer's clock at start
    lease_deadline: float


class Journal:
    """Every handler run, with a global sequence number at its start and its end, so runs of
    one job that overlapped in time are visible whatever the clock does."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.runs: list[Run] = []
        self.clock = clock

    def handler(self) -> type:
        journal = self

        @qq.job(topic="rec")
        class Rec:
            def perform(self, payload: Any, meta: qq.JobMeta) -> None:
                start_seq = next(journal._seq)
                start = journal.clock()
                if payload.get("work"):
                    time.sleep(payload["work"])
                end_seq = next(journal._seq)
                with journal._lock:
                    journal.runs.append(Run(
                        meta.job_id, meta.attempt, start_seq, end_seq, start,
                        meta.lease_deadline.timestamp(),
                    ))

        return Rec

    def by_job(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {}
        for run in sorted(self.runs, key=lambda r: r.start_seq):
            out.setdefault(run.job_id, []).append(run)
        return out

    def check_no_double_lease(self) -> None:
        """Each run started under an unexpired lease, and no two runs of one job overlap."""
        for job_id, runs in self.by_job().items():
            for run in runs:
                assert run.lease_deadline > run.start, f"{job_id} ran under an expired lease"
            for earlier, later in itertools.pairwise(runs):
                assert earlier.end_seq < later.start_seq, f"{job_id} ran twice at once"
                assert later.attempt > earlier.attempt, f"{job_id} reused an attempt"


def _enqueue(queue: qq.JobQueue, tenants: int, per_tenant: int, **extra: Any) -> dict[str, str]:
    """job_id -> tenant; keyed jobs (an enqueue retried after 1021 stays one job)."""
    jobs: dict[str, str] = {}
    for n in range(per_tenant):
        for t in range(tenants):
            tenant = f"tenant-{t}"
            job_id = queue.enqueue(tenant, "rec", {"n": n, **extra}, key=f"{tenant}/{n}")
            jobs[job_id] = tenant
    return jobs


def _drain_in_threads(queue: qq.JobQueue, consumers: int, concurrency: int) -> list[qq.Summary]:
    summaries: list[qq.Summary] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            summaries.append(queue.drain(concurrency=concurrency, timeout=60))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    assert len(summaries) == consumers
    assert not any(s.timed_out for s in summaries)
    return summaries


@pytest.mark.parametrize(("tenants", "per_tenant"), [(1, 240), (40, 6)], ids=["one", "many"])
def test_thread_consumers_run_every_job_exactly_once(
    db: qq.Database, tenants: int, per_tenant: int
) -> None:
    journal = Journal(time.time)
    queue = qq.JobQueue(db, jobs=[journal.handler()], dequeue_max=5)
    jobs = _enqueue(queue, tenants, per_tenant, work=0.001)

    summaries = _drain_in_threads(queue, consumers=4, concurrency=3)
    assert sum(s.completed for s in summaries) == len(jobs)
    assert sum(s.stale for s in summaries) == 0
    by_job = journal.by_job()
    assert set(by_job) == set(jobs)
    assert all(len(runs) == 1 and runs[0].attempt == 1 for runs in by_job.values())
    journal.check_no_double_lease()
    stats = queue.stats()
    assert (stats.ready, stats.scheduled, stats.leased, stats.dead) == (0, 0, 0, 0)
    assert stats.topics["rec"]["completed"] == len(jobs)


def _run_to_the_end(
    queue: qq.JobQueue, faulty: FaultyDatabase, clock: qq.ManualClock, jobs: dict[str, str]
) -> None:
    """Drain with several consumers; when they are idle, move the clock past every lease and
    backoff (a 1021 can leave a lease no consumer knows about); until no job is live."""
    for _ in range(30):
        _drain_in_threads(queue, consumers=3, concurrency=3)
        with faulty.paused():
            stats = queue.stats()
        if stats.ready + stats.scheduled + stats.leased == 0:
            return
        clock.advance(queue.settings.item_lease + 1)
    raise AssertionError(f"jobs still live after 30 rounds: {stats}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tenants", "per_tenant", "seed"), [(1, 120, 1), (30, 4, 2)], ids=["one", "many"]
)
def test_no_job_is_lost_under_commit_faults(
    db: qq.Database, clock: qq.ManualClock, tenants: int, per_tenant: int, seed: int
) -> None:
    journal = Journal(clock.now)
    faulty = FaultyDatabase(db, seed=seed, not_committed=0.08, unknown_result=0.05,
                            too_old=0.04)
    queue = qq.JobQueue(faulty, jobs=[journal.handler()], clock=clock, max_retries=20,
                        dequeue_max=4)
    jobs = _enqueue(queue, tenants, per_tenant)
    _run_to_the_end(queue, faulty, clock, jobs)

    with faulty.paused():
        for job_id, tenant in jobs.items():
            info = queue.get_job(tenant, job_id)
            assert info is None or info.state == "dead", info
            if info is not None:  # dead letters must say why
                assert info.dead_kind and info.reason
        # max_retries=20: a job would need 21 lost leases to die, so all of them completed
        assert queue.dead_letters() == []
        counters = queue.stats().topics["rec"]
    by_job = journal.by_job()
    assert set(by_job) == set(jobs)  # each ran at least once
    assert counters["completed"] == len(jobs)
    journal.check_no_double_lease()
    assert faulty.injected["not_committed"] > 0
    assert faulty.injected["unknown_result"] > 0
    assert faulty.injected["too_old"] > 0
    duplicates = sum(len(runs) - 1 for runs in by_job.values())
    assert duplicates <= faulty.injected["unknown_result"]


@pytest.mark.slow
def test_exactly_once_under_faults_that_never_commit(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    # 1020 and 1007 never commit, so a retry never repeats work: every job runs once.
    journal = Journal(clock.now)
    faulty = FaultyDatabase(db, seed=5, not_committed=0.15, too_old=0.1)
    queue = qq.JobQueue(faulty, jobs=[journal.handler()], clock=clock, dequeue_max=4)
    jobs = _enqueue(queue, 10, 10)
    _run_to_the_end(queue, faulty, clock, jobs)
    by_job = journal.by_job()
    assert set(by_job) == set(jobs)
    assert all(len(runs) == 1 for runs in by_job.values())
    journal.check_no_double_lease()
    assert faulty.injected["not_committed"] > 0 and faulty.injected["too_old"] > 0
