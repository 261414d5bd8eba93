"""The ``quick-queue`` CLI as a real process: signals (graceful worker shutdown, ``--watch``
ending on Ctrl-C), and errors from the real entry point as one stderr line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["QUICK_QUEUE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("QUICK_QUEUE_DEBUG", None)
    return env


def cli(url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quick_queue.cli", *args], env=env_for(url),
                          cwd=cwd, capture_output=True, text=True, timeout=60)


#: Run the rest of the command line in this process (same pid) with SIGINT as a terminal's
#: foreground command gets it: caught by default, not blocked. A child inherits an ignored SIGINT
#: and the signal mask from the test runner, and a runner started as a background job of a
#: non-interactive shell (``./scripts/test &``) ignores SIGINT: Python then leaves it ignored,
#: and a command waiting on stdin never ends on Ctrl-C (the test hung 30 s in such a run).
AS_AT_A_TERMINAL = (
    "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Process:
    """A CLI process whose stderr is collected by a thread, so tests can wait for a line."""

    def __init__(self, url: str, *args: str, cwd: Path | None = None,
                 stdin: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AS_AT_A_TERMINAL, "-m", "quick_queue.cli", *args],
            env=env_for(url), cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_for(self, text: str, timeout: float = 20.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.err + self.out) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"never saw {text!r}; stderr: {''.join(self.err)}")
            time.sleep(0.02)

    def stop(self, sig: int, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/q.db"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "jobsapp.py").write_text(textwrap.dedent(APP))
    return folder


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_errors_from_the_real_entry_point(url: str, tmp_path: Path) -> None:
    assert "unknown scheme 'bogus'" in assert_one_error_line(cli(url, "inspect", "--db",
                                                                 "bogus://x"), 2)
    assert "no database file at" in assert_one_error_line(cli(url, "inspect"), 1)
    assert not (tmp_path / "q.db").exists()
    line = assert_one_error_line(cli(url, "enqueue", "t", "--tenant", "a", "--payload", "{"), 2)
    assert "not valid JSON" in line


def test_foundationdb_unavailable_is_one_line(url: str, tmp_path: Path) -> None:
    """No client library here: ClientLibraryMissing. With one installed, the cluster file does
    not exist: a KVError. Either way one line and a non-zero status."""
    result = cli(url, "inspect", "--db", f"fdb://{tmp_path}/no/fdb.cluster")
    assert result.returncode == 1
    line = assert_one_error_line(result, 1)
    assert "FoundationDB" in line or "fdb" in line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_gracefully_on_signals(url: str, app_dir: Path, sig: int,
                                            processes: list[Process]) -> None:
    job = cli(url, "enqueue", "hello", "--tenant", "acme")
    assert job.returncode == 0, job.stderr
    job_id = job.stdout.strip()
    worker = Process(url, "worker", "jobsapp:queue", "--concurrency", "2", cwd=app_dir)
    processes.append(worker)
    worker.wait_for("Ctrl-C to stop")
    worker.wait_for(f"done hello acme/{job_id}")
    assert worker.stop(sig) == 0
    log = "".join(worker.err)
    assert "stopped: 1 completed" in log and "Traceback" not in log
    assert f"start hello acme/{job_id} attempt 1" in log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_with_processes_stops_on_signals(url: str, app_dir: Path, sig: int,
                                                processes: list[Process]) -> None:
    for tenant in ("a", "b", "c"):
        assert cli(url, "enqueue", "hello", "--tenant", tenant).returncode == 0
    worker = Process(url, "worker", "jobsapp:queue", "--processes", "2", "--concurrency", "2",
                     cwd=app_dir)
    processes.append(worker)
    worker.wait_for("2 processes")
    deadline = time.monotonic() + 20
    while sum("done hello" in line for line in worker.err) < 3:
        assert time.monotonic() < deadline, "".join(worker.err)
        time.sleep(0.05)
    assert "[" in next(line for line in worker.err if "done hello" in line)  # pid shown
    assert worker.stop(sig) == 0
    log = "".join(worker.err)
    assert "Traceback" not in log
    # one summary for the whole worker, not a bare "stopped" here and a summary there
    stops = [line for line in worker.err if line.startswith("stopped")]
    assert stops == ["stopped: 3 completed, 0 retried, 0 dead, 0 snoozed\n"], log


@pytest.mark.parametrize(("args", "sig", "shows"), [
    (["--watch", "0.2"], signal.SIGINT, "ready 1"),
    (["--watch", "--zones", "5"], signal.SIGTERM, "ready 1"),  # --watch alone: every 2 s
    (["--watch", "0.2", "--json"], signal.SIGINT, '"ready": 1'),
    (["zone", "acme", "--watch", "0.2"], signal.SIGINT, "ready 1"),
    (["--watch", "0.2", "zone", "acme", "--json"], signal.SIGTERM, '"ready": 1'),
    (["dead", "-w", "0.2"], signal.SIGINT, "No dead letters"),
    (["dead", "--watch", "--json"], signal.SIGINT, '"total": 0'),
])
def test_inspect_watch_ends_cleanly(url: str, args: list[str], sig: int, shows: str,
                                    processes: list[Process]) -> None:
    assert cli(url, "enqueue", "hello", "--tenant", "acme").returncode == 0
    watcher = Process(url, "inspect", *args)
    processes.append(watcher)
    watcher.wait_for(shows, count=1 if "--watch" in args and "0.2" not in args else 2)
    assert watcher.stop(sig) == 0
    out = "".join(watcher.out)
    assert "Traceback" not in out + "".join(watcher.err)
    assert shows in out


def test_console_script_is_installed_when_the_project_is() -> None:
    script = Path(sys.executable).parent / "quick-queue"
    if not script.exists() and shutil.which("quick-queue") is None:
        pytest.skip("the project is not pip-installed in this environment")
    exe = str(script) if script.exists() else str(shutil.which("quick-queue"))
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "inspect" in result.stdout


def wait_reading_stdin(process: Process, timeout: float = 20.0) -> None:
    """Until the command blocks reading its payload from stdin (so past start-up, whose
    imports a Ctrl-C interrupts with Python's traceback). Only the stdin read waits on a pipe:
    start-up reads none."""
    wchan = Path(f"/proc/{process.proc.pid}/wchan")
    deadline = time.monotonic() + timeout
    while "pipe_read" not in wchan.read_text():
        assert process.proc.poll() is None, f"exited: {''.join(process.err)}"
        assert time.monotonic() < deadline, "the command never started reading stdin"
        time.sleep(0.02)


def assert_interrupted(process: Process) -> None:
    assert process.stop(signal.SIGINT) == 130, "".join(process.err)
    assert "".join(process.err).strip() == "interrupted"


needs_wchan = pytest.mark.skipif(
    not Path("/proc/self/wchan").exists(),
    reason="needs Linux's /proc/PID/wchan to see the command blocked on stdin")


@needs_wchan
def test_ctrl_c_interrupts_a_command_with_130(url: str, processes: list[Process]) -> None:
    """A command other than the worker (here: enqueue waiting for its payload on stdin) ends on
    Ctrl-C with status 130 and one line, as the README says."""
    waiting = Process(url, "enqueue", "hello", "--tenant", "acme", "--payload", "-",
                      stdin=subprocess.PIPE)
    processes.append(waiting)
    wait_reading_stdin(waiting)
    assert_interrupted(waiting)


@needs_wchan
def test_ctrl_c_reaches_the_command_when_the_test_runner_ignores_it(
        url: str, processes: list[Process]) -> None:
    """A runner started in the background by a non-interactive shell ignores SIGINT, and a child
    inherits that (and a blocked SIGINT): the CLI is started as at a terminal all the same. It
    hung 30 s, once, in such a run of the suite."""
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        waiting = Process(url, "enqueue", "hello", "--tenant", "acme", "--payload", "-",
                          stdin=subprocess.PIPE)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, ignored)
    processes.append(waiting)
    wait_reading_stdin(waiting)
    assert_interrupted(waiting)
