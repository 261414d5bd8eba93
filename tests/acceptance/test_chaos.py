"""Chaos (issue 8, "Done means"): worker processes SIGKILLed, SIGSTOPped and clock-skewed at
random while they run a mix of quick, slow and transactional jobs; then the invariants:

* no lost job: every job finished (none left in the store, none dead);
* transactional jobs exactly once: each one's writes landed once, and only with its completion;
* no job ran twice at once: no two runs of a job overlap in true time, except a run whose
  process was stopped meanwhile (its lease expired while it could not extend it, and the job
  rightly ran elsewhere: that run learns it through ``meta.lease_lost``, and its result is
  refused).

Seeded and replayable: the seed decides the jobs, each worker's clock and the schedule of every
kill, stop and clock step; it is printed, and named in every failure. Replay one with
``QQ_CHAOS_SEED=<seed> pytest tests/acceptance/test_chaos.py``. (Thread timing is not replayed:
the same schedule meets the workers at slightly different moments.)
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from workers.procs import wait_for
from workers.skewed_proc import Run, SkewedWorker, read_runs

import quick_queue as qq
from quick_queue.keys import pack

pytestmark = pytest.mark.slow

WORKERS = 3
CHAOS_SECONDS = 12.0
SETTINGS: dict[str, Any] = {"item_lease": 2.0, "backoff_base": 0.05, "backoff_cap": 0.2}
CLOCK_STEPS = (-3600.0, -300.0, 0.0, 300.0, 3600.0)


@dataclass
class Chaos:
    """What was done to the workers, by process id (true times)."""

    seed: int
    stopped: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    killed: dict[int, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    def exempt(self, run: Run, until: float) -> bool:
        """Whether ``run``'s process was stopped while it ran."""
        end = run.end if run.end is not None else self.killed.get(run.pid, until)
        return any(stop < end and run.start < cont
                   for stop, cont in self.stopped.get(run.pid, []))

    def where(self) -> str:
        return f"chaos seed {self.seed} (replay: QQ_CHAOS_SEED={self.seed}); " + (
            "; ".join(self.actions[-12:]))


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("QQ_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {value} (replay: QQ_CHAOS_SEED={value})")
    return value


@pytest.fixture
def pool() -> Iterator[list[SkewedWorker]]:
    started: list[SkewedWorker] = []
    yield started
    for worker in started:
        worker.close()


def _jobs(queue: qq.JobQueue, rng: random.Random) -> dict[str, tuple[str, bool]]:
    """Quick jobs, slow ones, transactional ones (some of them slow), some scheduled:
    job id -> (tenant, transactional)."""
    jobs = {}
    for _ in range(120):
        tenant = f"t{rng.randrange(12)}"
        kind = rng.random()
        if kind < 0.45:  # transactional; a fifth of them slow: a lease period or two (< 5 s)
            work = rng.uniform(1.0, 2.5) if kind < 0.1 else rng.uniform(0, 0.05)
            jobs[queue.enqueue(tenant, "skew:tx", {"work": work})] = (tenant, True)
        else:
            work = rng.uniform(1.0, 3.0) if kind < 0.55 else rng.uniform(0, 0.1)
            due = rng.choice([0, 0, 0, 1, 3])
            jobs[queue.enqueue(tenant, "skew:work", {"work": work}, in_=due)] = (tenant, False)
    return jobs


def _start(url: str, log: Path, rng: random.Random, number: int) -> SkewedWorker:
    return SkewedWorker(url, log, f"w{number}", offset=rng.choice(CLOCK_STEPS), **SETTINGS)


def _wreak(url: str, log: Path, pool: list[SkewedWorker], chaos: Chaos) -> None:
    """Kill, stop and skew workers at random for CHAOS_SECONDS; a killed one is replaced."""
    rng = random.Random(chaos.seed + 2)
    end = time.monotonic() + CHAOS_SECONDS
    started = len(pool)
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.3, 1.2))
        index = rng.randrange(len(pool))
        worker = pool[index]
        action = rng.random()
        if action < 0.25:
            chaos.killed[worker.pid] = time.time()
            chaos.actions.append(f"kill {worker.name}")
            worker.kill()
            pool[index] = _start(url, log, rng, started)
            started += 1
        elif action < 0.6:
            pause = rng.uniform(0.2, 3.0)  # past the 2 s lease, sometimes
            chaos.actions.append(f"stop {worker.name} {pause:.1f}s")
            stop_at = time.time()
            worker.signal(signal.SIGSTOP)
            time.sleep(pause)
            worker.signal(signal.SIGCONT)
            chaos.stopped.setdefault(worker.pid, []).append((stop_at, time.time()))
        else:
            step = rng.choice(CLOCK_STEPS)
            chaos.actions.append(f"clock {worker.name} {step:+g}s")
            worker.step(step)


def test_chaos_keeps_every_promise(
    db_url: str, file_db: qq.Database, tmp_path: Path, pool: list[SkewedWorker], seed: int
) -> None:
    chaos = Chaos(seed)
    log = tmp_path / "runs.log"
    queue = qq.JobQueue(file_db)
    jobs = _jobs(queue, random.Random(seed))
    rng = random.Random(seed + 1)
    pool += [_start(db_url, log, rng, n) for n in range(WORKERS)]
    _wreak(db_url, log, pool, chaos)

    def finished() -> bool:
        stats = queue.stats()
        return stats.ready + stats.scheduled + stats.leased == 0

    try:
        wait_for(finished, timeout=25, what=f"every job to finish ({chaos.where()})")
    except AssertionError:  # what is left, and what the workers said
        print(queue.stats())
        left = [info for j, (tenant, _) in jobs.items() if (info := queue.get_job(tenant, j))]
        print(*left[:5], sep="\n")
        for worker in pool:
            print(worker.name, worker.pid, worker.alive(), worker.stderr()[-1000:])
        raise
    for worker in pool:
        worker.stop()

    # no lost job
    assert queue.dead_letters() == [], chaos.where()
    assert [j for j, (tenant, _) in jobs.items() if queue.get_job(tenant, j)] == [], (
        chaos.where())
    runs = read_runs(log)
    assert {r.job for r in runs} == set(jobs), chaos.where()
    print(f"{len(runs)} runs of {len(jobs)} jobs; {len(chaos.killed)} kills, "
          f"{sum(map(len, chaos.stopped.values()))} stops, "
          f"{sum(a.startswith('clock') for a in chaos.actions)} clock steps")
    # transactional jobs exactly once
    counts = _tx_counts(file_db, [j for j, (_, tx) in jobs.items() if tx])
    assert {j: c for j, c in counts.items() if c != 1} == {}, chaos.where()
    # never two runs at once (but for a run whose process was stopped under it)
    until = time.time()
    by_job: dict[str, list[Run]] = {}
    for run in runs:
        if not chaos.exempt(run, until):
            by_job.setdefault(run.job, []).append(run)
    for job, job_runs in by_job.items():
        job_runs.sort(key=lambda r: r.start)
        for earlier, later in itertools.pairwise(job_runs):
            end = earlier.end if earlier.end is not None else chaos.killed.get(earlier.pid, until)
            assert later.start >= end, f"{job} ran twice at once: {earlier}, {later}; " + (
                chaos.where())


def _tx_counts(db: qq.Database, jobs: list[str]) -> dict[str, int]:
    def read(tr: qq.Transaction) -> dict[str, int]:
        out = {}
        for job in jobs:
            raw = tr.get(pack(("app", "count", job)))
            out[job] = int.from_bytes(raw, "little") if raw else 0
            assert (tr.get(pack(("app", "done", job))) is None) == (out[job] == 0)
        return out

    return db.transact(read)
