"""``run(processes=N)`` on FoundationDB: the children are spawned, not forked (a forked child
inherits the parent's dead client and waits forever for its first read: issue 14, bug 2), and
they drain the queue on the live cluster through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import quick_queue as qq
from quick_queue.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.fdb

APP = """
from __future__ import annotations
import os
import quick_queue as qq

queue = qq.JobQueue(qq.open(os.environ["QUICK_QUEUE_URL"]))

@queue.job(topic="count")
class Count:
    def perform(self, payload, meta):
        line = f"{meta.job_id} {os.getpid()}\\n".encode()
        fd = os.open(os.environ["RUNS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "jobsapp.py").write_text(textwrap.dedent(APP))
    return folder


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def worker(url: str, app_dir: Path, runs: Path, err: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, QUICK_QUEUE_URL=url, RUNS_LOG=str(runs))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(err, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "quick_queue.cli", "worker", "jobsapp:queue", *args],
            cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``pid``'s children."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), cmdline))
    return found


def consumers(pid: int) -> list[int]:
    """The consumer processes among ``pid``'s children (a spawning supervisor also has
    multiprocessing's resource tracker)."""
    return [child for child, cmd in children(pid) if "resource_tracker" not in cmd]


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)


def test_a_two_process_worker_drains_on_the_cluster(
    fdb_queue_url: str, app_dir: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Before: 0 of 300 jobs done in 20 s, every forked child stuck on its first read."""
    db = qq.open(fdb_queue_url)
    queue = qq.JobQueue(db)
    jobs = 300
    queue.enqueue_many([(f"tenant-{n % 7}", "count", {"n": n}) for n in range(jobs)])
    runs, err = tmp_path / "runs.log", tmp_path / "worker.err"
    proc = worker(fdb_queue_url, app_dir, runs, err, "-p", "2", "-c", "4")
    started.append(proc)

    def done() -> bool:
        assert proc.poll() is None, err.read_text()
        return queue.stats().topics.get("count", {}).get("completed", 0) >= jobs

    wait(done, 60, f"{jobs} jobs completed; log:\n{err.read_text() if err.exists() else ''}")
    assert len(consumers(proc.pid)) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, err.read_text()
    log = err.read_text()
    assert "Traceback" not in log and f"stopped: {jobs} completed" in log, log
    assert "leaked semaphore" not in log, log  # before: the resource tracker complained
    lines = runs.read_text().split("\n")[:-1]
    ran = {line.split()[0] for line in lines}
    pids = {line.split()[1] for line in lines}
    assert len(ran) == jobs and len(pids) == 2  # every job, by both children, not the parent
    stats = queue.stats()
    assert (stats.ready, stats.scheduled, stats.leased, stats.dead) == (0, 0, 0, 0)
    db.close()


def test_spawned_children_exit_with_their_supervisor(
    fdb_queue_url: str, app_dir: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    proc = worker(fdb_queue_url, app_dir, tmp_path / "runs.log", tmp_path / "worker.err", "-p", "2")
    started.append(proc)
    wait(lambda: len(consumers(proc.pid)) == 2, 30, "two consumer processes")
    kids = consumers(proc.pid)
    proc.kill()
    proc.wait(10)
    wait(lambda: not any(Path(f"/proc/{kid}").exists() and
                         Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                         not in ("Z", "X") for kid in kids), 15, "the children to exit")


def test_a_handler_a_child_cannot_import_is_refused_up_front(fdb_queue_url: str) -> None:
    @qq.job(topic="local")
    class Local:
        def perform(self, payload: object, meta: qq.JobMeta) -> None:
            return None

    db = qq.open(fdb_queue_url)
    queue = qq.JobQueue(db, jobs=[Local])
    with pytest.raises(ConfigurationError, match="cannot be imported by name"):
        queue.run(processes=2)
    db.close()


def test_handlers_of_a_script_with_no_file_are_refused_up_front(fdb_queue_url: str) -> None:
    """``python -c`` (or a REPL): a spawned child cannot import its ``__main__`` again. Before:
    each child died on import and was restarted forever."""
    code = textwrap.dedent(f"""
        import quick_queue as qq

        @qq.job(topic="inline")
        class Inline:
            def perform(self, payload, meta):
                return None

        queue = qq.JobQueue(qq.open({fdb_queue_url!r}), jobs=[Inline])
        queue.run(processes=2)
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr and "cannot be imported" in done.stderr


def test_metrics_port_counts_what_spawned_children_ran(
    fdb_queue_url: str, app_dir: Path, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """``worker -p 2 --metrics-port`` on FoundationDB: the children are spawned, so they do not
    inherit the supervisor's subscription; before, /metrics counted none of their jobs."""
    pytest.importorskip("prometheus_client", reason="--metrics-port needs the web extra")
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    db = qq.open(fdb_queue_url)
    queue = qq.JobQueue(db)
    jobs = 40
    queue.enqueue_many([(f"tenant-{n % 3}", "count", {"n": n}) for n in range(jobs)])
    runs, err = tmp_path / "runs.log", tmp_path / "worker.err"
    proc = worker(fdb_queue_url, app_dir, runs, err, "-p", "2", "--metrics-port", str(port))
    started.append(proc)
    wanted = ('quick_queue_job_events_total{event="completed",queue="default",topic="count"} '
              f"{jobs}.0")
    seen = [""]

    def counted() -> bool:
        assert proc.poll() is None, err.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                seen[0] = reply.read().decode()
        except OSError:
            return False
        return wanted in seen[0]

    wait(counted, 60, f"{wanted!r} in /metrics")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, err.read_text()
    db.close()
