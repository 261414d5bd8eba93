"""``quick-queue inspect workers``: the live workers of a queue and the jobs each holds, read
from the store by a separate (read-only) connection while a real worker runs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import quick_queue as qq
from quick_queue.cli import app
from quick_queue.live_workers import workers

release = threading.Event()


@qq.job(topic="cw:hold")
class Hold:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        release.wait(10)


def _inspect(url: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["inspect", "workers", "--db", url, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_inspect_workers_lists_a_running_worker_and_the_job_it_holds(
    tmp_path: Path, background: Any, wait_until: Any
) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    db = qq.open(url)
    release.clear()
    try:
        queue = qq.JobQueue(db, jobs=[Hold])
        job_id = queue.enqueue("acme", "cw:hold", {})
        assert "No live workers" in _inspect(url)
        run = background(queue.run, concurrency=2, log=False)
        try:
            consumer = wait_until(lambda: queue._consumer, what="the consumer")
            wait_until(lambda: consumer.inflight.entries, what="the job to be leased")
            consumer.heartbeat.beat()  # its next heartbeat, now rather than in seconds
            wait_until(lambda: [w for w in workers(queue) if w.jobs], what="the held job")
            listed = json.loads(_inspect(url, "--json"))["workers"]
            assert len(listed) == 1
            assert listed[0]["pid"] == os.getpid() and listed[0]["concurrency"] == 2
            assert listed[0]["jobs"] == [{"tenant": "acme", "job_id": job_id}]
            table = _inspect(url)
            assert "Live workers (1)" in table and f"acme/{job_id}" in table
        finally:
            release.set()
            queue.stop()
            run.result()
        assert json.loads(_inspect(url, "--json"))["workers"] == []
    finally:
        db.close()
