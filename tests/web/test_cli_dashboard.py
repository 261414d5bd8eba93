"""``quick-queue dashboard`` and ``quick-queue worker --metrics-port`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq

pytest.importorskip("uvicorn", reason="the dashboard needs the web extra: pip install -e .[web]")

ROOT = Path(__file__).resolve().parents[2]
APP = """
from __future__ import annotations
import os
import quick_queue as qq

db = qq.open(os.environ["QUICK_QUEUE_URL"])
queue = qq.JobQueue(db)

@queue.job(topic="hello")
class Hello:
    def perform(self, payload, meta):
        return None
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cli:
    """A ``quick-queue`` process whose stderr lines are collected by a thread."""

    def __init__(self, tmp_path: Path, url: str, *args: str) -> None:
        env = dict(os.environ, QUICK_QUEUE_URL=url, PYTHONPATH=os.pathsep.join(
            filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("QUICK_QUEUE_DASHBOARD_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "quick_queue.cli", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.err: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def line(self, start: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.err) if line.startswith(start)]
            if found:
                return found[0].strip()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"never saw {start!r}; stderr: {''.join(self.err)}")
            time.sleep(0.02)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(30)
        self._pump_thread.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return status


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    address = f"sqlite:///{tmp_path}/q.db"
    db = qq.open(address)
    qq.JobQueue(db).enqueue("acme", "hello", {})
    db.close()
    (tmp_path / "webapp.py").write_text(APP)
    yield address


def _request(url: str, data: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, body, headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text, status = error.read().decode(), error.code
    return status, (json.loads(text) if text.startswith(("{", "[")) else text)


def test_dashboard_prints_its_url_and_a_generated_token(tmp_path: Path, url: str) -> None:
    port = _free_port()
    cli = Cli(tmp_path, url, "dashboard", "--db", url, "--port", str(port), "--app",
              "webapp:queue")
    try:
        base = cli.line("dashboard: ").split()[1]
        assert base == f"http://127.0.0.1:{port}/"
        token = cli.line("token: ").split()[1]
        status, overview = _request(base + "api/v1/overview")
        assert status == 200 and overview["ready"] == 1
        job = {"tenant": "acme", "topic": "hello", "payload": {}}
        assert _request(base + "api/v1/jobs", job)[0] == 401
        assert _request(base + "api/v1/jobs", {**job, "topic": "nope"}, token)[0] == 422
        status, made = _request(base + "api/v1/jobs", job, token)
        assert status == 201 and made["job_id"]
        assert "quick_queue_queue_ready" in _request(base + "metrics")[1]
    finally:
        assert cli.stop() == 0


def test_dashboard_on_a_busy_port_fails_with_one_line(tmp_path: Path, url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "quick_queue.cli", "dashboard", "--db", url,
                               "--port", str(port)], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on "
                                                           f"127.0.0.1:{port}")


def test_worker_metrics_port_serves_the_process_metrics(tmp_path: Path, url: str) -> None:
    port = _free_port()
    cli = Cli(tmp_path, url, "worker", "webapp:queue", "--metrics-port", str(port))
    try:
        assert cli.line("metrics: ") == f"metrics: http://127.0.0.1:{port}/metrics"
        metrics = f"http://127.0.0.1:{port}/metrics"
        wanted = 'quick_queue_job_events_total{event="completed",queue="default",topic="hello"} 1.0'
        deadline = time.monotonic() + 30
        while wanted not in _request(metrics)[1]:
            assert time.monotonic() < deadline, _request(metrics)[1]
            time.sleep(0.05)
        assert 'quick_queue_jobs_in_flight{queue="default"} 0.0' in _request(metrics)[1]
    finally:
        assert cli.stop() == 0


def test_worker_metrics_port_sums_several_processes(tmp_path: Path, url: str) -> None:
    db = qq.open(url)
    queue = qq.JobQueue(db)
    for n in range(7):
        queue.enqueue(f"t{n}", "hello", {})  # with the fixture's job: 8
    db.close()
    port = _free_port()
    cli = Cli(tmp_path, url, "worker", "webapp:queue", "-p", "2", "--metrics-port", str(port))
    try:
        cli.line("metrics: ")
        metrics = f"http://127.0.0.1:{port}/metrics"
        wanted = 'quick_queue_job_events_total{event="completed",queue="default",topic="hello"} 8.0'
        deadline = time.monotonic() + 30
        while wanted not in _request(metrics)[1]:
            assert time.monotonic() < deadline, _request(metrics)[1]
            time.sleep(0.05)
        assert "quick_queue_job_run_seconds_count" in _request(metrics)[1]
    finally:
        assert cli.stop() == 0
