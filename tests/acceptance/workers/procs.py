"""The test side of worker processes: start ``proc_jobs.py``, read its event log, wait for
conditions with a bounded poll, stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

SCRIPT = Path(__file__).with_name("proc_jobs.py")
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``condition`` every few ms until it returns something truthy; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # the last piece has no newline yet while a worker is writing it: read only whole lines
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def events(path: Path, event: str, job: str | None = None) -> list[dict[str, Any]]:
    return [e for e in read_log(path) if e["event"] == event and (job is None or e["job"] == job)]


class Worker:
    """One ``proc_jobs.py`` process (a consumer, or a supervisor of several); ``script``
    runs another worker script with the same command line (``async_jobs.py``)."""

    def __init__(
        self, url: str, log: Path, *, processes: int = 1, concurrency: int = 4,
        queue: str = "default", script: Path = SCRIPT, own_group: bool = False,
        **settings: Any,
    ) -> None:
        cmd = [
            sys.executable, str(script), url, str(log), "--queue", queue,
            "--processes", str(processes), "--concurrency", str(concurrency),
            "--settings", json.dumps(settings),
        ]
        # stderr goes to a file: a pipe nobody reads could fill up and block the worker
        self.errors = log.with_name(f"{log.stem}.{time.monotonic_ns()}.err")
        with open(self.errors, "w") as err_file:
            # own_group: a process group of its own, for signal_group (as a service manager
            # signals a service's whole group)
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                         start_new_session=own_group)
        self.pid = self.proc.pid
        ready = self.proc.stdout.readline() if self.proc.stdout else ""
        if not ready:
            self.proc.wait(5)
            raise AssertionError(f"worker process did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.errors.read_text() if self.errors.exists() else ""

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """``sig`` to every process of the worker's group (it must have ``own_group``)."""
        os.killpg(self.pid, sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> dict[str, Any] | None:
        """SIGTERM, wait, and return the printed Summary (None for a supervisor)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(
                f"worker {self.pid} did not stop on SIGTERM:\n{self.stderr()}"
            ) from None
        assert self.proc.returncode == 0, (
            f"worker exited with {self.proc.returncode}:\n{self.stderr()}"
        )
        lines = [line for line in out.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    def close(self) -> None:
        """Best-effort cleanup for a test that failed half-way."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def process_state(pid: int) -> str:
    """The state letter of ``pid`` from /proc ('R', 'S', 'T' stopped, 'Z' zombie), or '' when
    the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def gone(pid: int) -> bool:
    return process_state(pid) in ("", "Z", "X")
