"""The test side of ``skewed.py`` workers: start one with its own wall-clock offset, step its
clock, stop it; read the runs it logged and check that no job ever ran twice at once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("skewed.py")


class SkewedWorker:
    """One ``skewed.py`` process; ``step(seconds)`` sets its wall clock's offset."""

    def __init__(
        self, url: str, log: Path, name: str, *, offset: float = 0.0, concurrency: int = 2,
        **settings: Any,
    ) -> None:
        self.name = name
        self.offset_file = log.with_name(f"{name}.offset")
        self.step(offset)
        self.errors = log.with_name(f"{name}.{time.monotonic_ns()}.err")
        cmd = [sys.executable, str(SCRIPT), url, str(log), str(self.offset_file),
               "--concurrency", str(concurrency), "--settings", json.dumps(settings)]
        with open(self.errors, "w") as err_file:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
        self.pid = self.proc.pid
        ready = self.proc.stdout.readline() if self.proc.stdout else ""
        if not ready:
            self.proc.wait(5)
            raise AssertionError(f"worker {name} did not start:\n{self.stderr()}")
        self.started_wall = float(json.loads(ready)["wall"])

    def step(self, offset: float) -> None:
        """Set the worker's wall clock to the true time plus ``offset`` seconds."""
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(repr(offset))
        os.replace(tmp, self.offset_file)  # atomic: the worker never reads half a number

    def stderr(self) -> str:
        return self.errors.read_text() if self.errors.exists() else ""

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.communicate(timeout=10)  # reaps it and closes its pipe

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGCONT (in case it is stopped), SIGTERM, wait; the printed Summary."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"worker {self.name} did not stop:\n{self.stderr()}") from None
        assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}:\n" + (
            self.stderr())
        lines = [line for line in out.splitlines() if line.strip()]
        return dict(json.loads(lines[-1]))

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.communicate()


@dataclass
class Run:
    job: str
    pid: int
    attempt: int
    start: float
    end: float | None  # None: the process died (or was stopped) before the handler returned


def read_runs(log: Path) -> list[Run]:
    """Every handler run in ``log``, start paired with the end of the same process."""
    if not log.exists():
        return []
    open_runs: dict[tuple[str, int], Run] = {}
    runs: list[Run] = []
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        key = (event["job"], event["pid"])
        if event["event"] == "start":
            run = Run(event["job"], event["pid"], event["attempt"], event["t"], None)
            open_runs[key] = run
            runs.append(run)
        elif key in open_runs:
            open_runs.pop(key).end = event["t"]
    return runs


def overlaps(runs: list[Run], until: float, *, exempt: set[int] | None = None) -> list[str]:
    """Pairs of runs of one job that overlapped in time (a run without an end lasts until
    ``until``). Runs of processes in ``exempt`` are left out."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if exempt is None or run.pid not in exempt:
            by_job[run.job].append(run)
    found = []
    for job, job_runs in by_job.items():
        job_runs.sort(key=lambda r: r.start)
        for earlier, later in itertools.pairwise(job_runs):
            end = earlier.end if earlier.end is not None else until
            if later.start < end:
                found.append(f"{job}: {earlier} and {later}")
    return found
