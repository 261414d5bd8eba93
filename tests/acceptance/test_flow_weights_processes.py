"""Weighted tenants with real worker processes on one database (issue 13): with a paid tier of
weight 3 and a free tier of weight 1, every tenant backlogged, the jobs three workers start split
3:1 within a few points, one of the workers SIGKILLed early. (A lone weighted tenant taking
every worker is shown by tests/integration/test_flow_weights.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from workers.procs import Worker, events, wait_for

import quick_queue as qq

pytestmark = pytest.mark.slow
PER_TENANT = 1400
TIER = 5  # tenants per tier
#: Starts counted: no tenant's backlog runs out before (paid ~900 of 1,400 each). Why 6,000: a
#: scan draws one of the ten zones and its visit starts 4 of its jobs, so the share is that of
#: ~1,500 weighted draws, whose spread is 1.1 points (1.6 at 3,000 starts, where one run in
#: about thirty on a loaded machine fell below 70 %: 68.4 % once in CI's suite).
MEASURED = 6000


def test_a_three_to_one_weight_holds_across_processes_with_a_sigkill(
    db_url: str, file_db: qq.Database, tmp_path: Path, workers: list[Worker]
) -> None:
    log = tmp_path / "events.log"
    queue = qq.JobQueue(file_db)
    # a paid tier of weight 3 and a free tier of weight 1, TIER tenants each
    for n in range(TIER):
        queue.set_weight(f"paid-{n}", 3)
    for tenant in [f"{tier}-{n}" for tier in ("paid", "free") for n in range(TIER)]:
        queue.enqueue_many([(tenant, "proc:record", {"work": 0.002}) for _ in range(PER_TENANT)])
    workers += [Worker(db_url, log, concurrency=4, dequeue_max=4) for _ in range(3)]
    wait_for(lambda: len(events(log, "start")) >= 100, timeout=30, what="100 starts")
    workers[0].kill()  # its leased jobs come back when their leases run out
    wait_for(lambda: len(events(log, "start")) >= MEASURED, timeout=90,
             what=f"{MEASURED} starts")
    for worker in workers[1:]:
        worker.stop()
    starts = sorted(events(log, "start"), key=lambda e: e["t"])[:MEASURED]
    paid = sum(e["tenant"].startswith("paid") for e in starts)
    # Runs gave 72.6-76.7 % on both engines. Tiers of several tenants, as weights are used:
    # with only two tenants and three workers, a zone being visited by one consumer at a time
    # sends a worker that drew the busy heavy zone to the light one, bending the share (68 %
    # seen on FoundationDB, whose visits take longer; docs/flow.md).
    assert paid / MEASURED == pytest.approx(0.75, abs=0.05), (paid, MEASURED)

