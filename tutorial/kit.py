"""Helpers the tutorial steps share: headings, running the CLI the way a reader would, running
workers until something happened, and showing the worker's log lines."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_log_handler: logging.Handler | None = None


def heading(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(3, 76 - len(title)), flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


def check(condition: object, what: str) -> None:
    """A tutorial claim; the demo fails (exit 1) when it does not hold."""
    if not condition:
        raise AssertionError(what)
    print(f"  [ok] {what}", flush=True)


def cli_env() -> dict[str, str]:
    """The environment of the CLI and worker processes: the shop's database (./coffee.db when
    QUICK_QUEUE_URL is not set), and this checkout on the import path."""
    from tutorial.shop import DB_URL

    env = dict(os.environ)
    env["QUICK_QUEUE_URL"] = DB_URL
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("COLUMNS", "100")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, show: bool = True, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``quick-queue ARGS`` (as ``python -m quick_queue.cli``) and print what it prints."""
    if show:
        say(f"\n$ quick-queue {shlex.join(args)}")
    result = subprocess.run(
        [sys.executable, "-m", "quick_queue.cli", *args], cwd=ROOT, env=cli_env(),
        capture_output=True, text=True, timeout=60,
    )
    if show:
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            say("  " + line.rstrip())
    if ok and result.returncode != 0:
        raise AssertionError(f"quick-queue {shlex.join(args)} exited {result.returncode}: "
                             f"{result.stderr.strip()}")
    return result


class Worker:
    """``quick-queue worker tutorial.shop:queue ARGS`` in a subprocess; its log lines are
    printed as they come, prefixed with ``name``."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._seen = threading.Condition()
        say(f"\n$ quick-queue worker tutorial.shop:queue {shlex.join(args)}".rstrip()
            + ("   # " + name if name else ""))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quick_queue.cli", "worker", "tutorial.shop:queue", *args],
            cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            say(f"  {self.name} | {line.rstrip()}")
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{self.name} never logged {text!r}")
                self._seen.wait(min(left, 0.1))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._reader.join(5)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


def show_worker_log(enabled: bool = True) -> None:
    """Print the in-process worker's log (one line per job state change) while steps run."""
    global _log_handler
    logger = logging.getLogger("quick_queue.worker")
    if _log_handler is None:
        _log_handler = logging.StreamHandler(sys.stdout)
        _log_handler.setFormatter(logging.Formatter("  worker | %(message)s"))
        logger.addHandler(_log_handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if enabled else logging.WARNING)


@contextmanager
def quiet_worker() -> Iterator[None]:
    logger = logging.getLogger("quick_queue.worker")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def work_until(done: Callable[[], Any], timeout: float = 15.0, concurrency: int = 4) -> Any:
    """Run the shop's jobs (``queue.drain()``, again and again, as a worker would) until
    ``done()`` is truthy; returns its value."""
    from tutorial.shop import queue

    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not done after {timeout:g} s")
        queue.drain(concurrency=concurrency)
        value = done()
        if value:
            return value
        time.sleep(0.05)


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` (without running jobs) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


def run_step(main: Callable[[], None]) -> None:
    """``python -m tutorial.stepN_...``: run one step on its own (after the earlier ones)."""
    show_worker_log()
    try:
        main()
    except AssertionError as error:
        say(f"\nSTEP FAILED: {error}")
        sys.exit(1)


# -- the demo on a server database (fdb://) ----------------------------------------------------
DEMO_QUEUE = "default"  # tutorial.shop's queue, and the CLI's default --queue


def _demo_ranges() -> list[tuple[bytes, bytes]]:
    from quick_queue.core.workers import workers_prefix
    from quick_queue.keys import Layout
    from quick_queue.kv.api import strinc

    prefixes = [Layout(DEMO_QUEUE).root, workers_prefix(DEMO_QUEUE)]
    return [(prefix, strinc(prefix)) for prefix in prefixes]


def queue_in_use(url: str) -> str | None:
    """Why the demo must not start on ``url`` (None: the queue it runs is empty there). A
    server keeps what is in it, so a queue with jobs, schedules or workers is someone's."""
    import quick_queue as qq

    db = qq.open(url, read_only=True)
    try:
        found = db.transact(lambda tr: [tr.get_range(b, e, limit=1) for b, e in _demo_ranges()])
    finally:
        db.close()
    if not any(found):
        return None
    return (f"the queue {DEMO_QUEUE!r} on {url} is not empty (jobs, schedules or live "
            "workers), and the demo would mix its jobs with them and remove them at the end; "
            "run it on a cluster whose 'default' queue is empty")


def remove_demo_queue(url: str) -> None:
    """Remove every key of the demo's queue (it was empty when the demo started)."""
    import quick_queue as qq

    db = qq.open(url)
    try:
        def clear(tr: Any) -> None:
            for begin, end in _demo_ranges():
                tr.clear_range(begin, end)

        db.transact(clear)
    finally:
        db.close()
    say(f"(removed the demo's queue {DEMO_QUEUE!r} from {url})")
