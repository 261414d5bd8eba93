"""The JSON log format: one object per line with the job's fields, whatever the tenant's name
holds; ``quick-queue worker --log-format json``."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.logjson import JsonFormatter
from tests.conftest import QueueFactory

ROOT = Path(__file__).resolve().parents[2]


@qq.job(topic="j:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@qq.job(topic="j:fail", max_retries=0)
class Fail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("line one\nline two")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("quick_queue")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_each_state_change_is_one_json_object_with_the_job_fields(
    make_queue: QueueFactory, json_lines: io.StringIO
) -> None:
    queue = make_queue(Ok, Fail)
    tenant = 'evil\n{"forged": true}\x1b[2J'
    ok = queue.enqueue(tenant, "j:ok", {})
    bad = queue.enqueue("t2", "j:fail", {})
    queue.drain(timeout=10)
    lines = json_lines.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses: nothing was forged
    assert not any("forged" in r for r in records)
    mine = [r for r in records if r.get("job_id") == ok]
    assert [r["event"] for r in mine] == ["started", "completed"]
    done = mine[1]
    assert done["tenant"] == tenant and done["topic"] == "j:ok" and done["attempt"] == 1
    assert done["duration"] >= 0 and done["level"] == "info" and done["pid"] == os.getpid()
    assert mine[0]["waited"] >= 0
    dead = next(r for r in records if r.get("job_id") == bad and r["event"] == "dead")
    assert dead["outcome"] == "retry" and "line one\nline two" in dead["reason"]


def test_the_worker_logs_json_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    (tmp_path / "jsonapp.py").write_text(
        "import os\nimport quick_queue as qq\n"
        "queue = qq.JobQueue(qq.open(os.environ['QUICK_QUEUE_URL']))\n"
        "@queue.job(topic='hello')\nclass Hello:\n"
        "    def perform(self, payload, meta):\n        return None\n")
    db = qq.open(url)
    job_id = qq.JobQueue(db).enqueue("acme", "hello", {})
    db.close()
    env = dict(os.environ, QUICK_QUEUE_URL=url,
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "quick_queue.cli", "worker", "jsonapp:queue",
                           "--drain", "--log-format", "json"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(e["event"], e["job_id"]) for e in events] == [("started", job_id),
                                                           ("completed", job_id)]
    bad = subprocess.run([sys.executable, "-m", "quick_queue.cli", "worker", "jsonapp:queue",
                          "--drain", "--log-format", "xml"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --log-format must be text or json, not 'xml'"
