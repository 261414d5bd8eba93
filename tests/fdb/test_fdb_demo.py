"""The coffee-shop demo on the live cluster (issue 14): every step behaves as described, and on
a server it refuses a queue that is not empty, since it removes what it made at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import quick_queue as qq

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.fdb


def demo(url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("QUICK_QUEUE_URL", None)
    return subprocess.run([sys.executable, "-m", "tutorial.demo", "--db", url], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=110)


@pytest.mark.slow
def test_the_demo_runs_on_the_cluster(fdb_queue_url: str) -> None:
    done = demo(fdb_queue_url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All 10 steps behaved as described" in done.stdout
    with qq.open(fdb_queue_url) as db:  # it left nothing behind: it can run again
        stats = qq.JobQueue(db).stats()
        assert (stats.ready, stats.scheduled, stats.leased, stats.dead) == (0, 0, 0, 0)


def test_the_demo_leaves_a_queue_in_use_alone(fdb_queue_url: str) -> None:
    with qq.open(fdb_queue_url) as db:
        queue = qq.JobQueue(db)
        job_id = queue.enqueue("someone", "their.topic", {"n": 1})
        done = demo(fdb_queue_url)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "DEMO NOT STARTED" in done.stdout and "is not empty" in done.stdout
        assert queue.get_job("someone", job_id) is not None
