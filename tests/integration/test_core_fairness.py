"""Fairness at the core level (DESIGN.md §4, last invariant; §7 target): a tenant with one job is
served promptly while another tenant has a huge backlog queued ahead of it."""

from __future__ import annotations

import math
import random

import pytest

from quick_queue.clock import ManualClock
from quick_queue.kv.api import Database
from quick_queue.models import to_us
from quick_queue.queue import JobQueue
from tests.support.corekit import Core, check_invariants

BACKLOG = 10_000
SMALL = 100


@pytest.mark.parametrize("mode", ["two-step", "one-step"])
@pytest.mark.parametrize("seed", [1, 2])
def test_one_job_tenants_start_before_the_backlog(
    db: Database, clock: ManualClock, seed: int, mode: str
) -> None:
    """Each zone visit is lease_zone then dequeue (DESIGN.md), or the runtime's one step."""
    queue = JobQueue(db, name="fair", clock=clock)  # the db's clock too (conftest)
    for start in range(0, BACKLOG, 2_000):
        queue.enqueue_many([("busy", "work", {"n": n}) for n in range(start, start + 2_000)])
    clock.advance(0.001)  # the one-job tenants come after the whole backlog
    queue.enqueue_many([(f"t{n:03d}", "work", None) for n in range(SMALL)])

    s = queue.settings
    assert queue.stats().topics["work"]["enqueued"] == BACKLOG + SMALL
    core = Core(
        db, queue.layout, slack=to_us(s.pointer_slack), max_snoozes=s.max_snoozes,
        zone_lease=to_us(s.zone_lease), item_lease=to_us(s.item_lease),
        min_inactive=to_us(s.min_inactive), promote_max=s.promote_max,
    )
    rng = random.Random(seed)
    now = to_us(clock.now())
    started: list[str] = []
    busy = 0
    small_left = {f"t{n:03d}" for n in range(SMALL)}
    while small_left and busy < 1_000:
        # the scanner's selection rule (consumer/runner.py, _scan_loop)
        due, _ = core.scan(now, s.peek_max)
        assert due, "work is queued but no zone is due"
        k = min(s.selection_max, max(1, math.ceil(len(due) * s.selection_frac)), len(due))
        for _vesting, tenant in rng.sample(due, k):
            visit = core.visit(tenant, now, 1) if mode == "two-step" else core.take(tenant, now, 1)
            for job in visit or []:
                started.append(tenant)
                if tenant == "busy":
                    busy += 1
                else:
                    small_left.discard(tenant)
                assert core.done(job, now)
        now += 1_000  # a scan per millisecond
    assert not small_left, f"{len(small_left)} one-job tenants still waiting after {busy} jobs"
    # DESIGN.md §7: the last one-job tenant starts within the first 2 % of the jobs run
    assert len(started) <= 0.02 * (BACKLOG + SMALL), len(started)
    store = core.store()
    assert sum(1 for t, _ in store.items if t == "busy") == BACKLOG - busy
    check_invariants(store, now, to_us(s.pointer_slack))
