"""Several consumer processes under one supervisor: ``JobQueue.run(processes=N)``.

Python threads share one interpreter lock, so past about one core of queue work a worker needs
processes. The supervisor forks N children, each opening the database afresh (a SQLite
connection must not cross a fork) and running a ``Consumer``; it restarts a child that dies (a
job that kills its process loses no work: its lease expires and another consumer takes it) and
forwards SIGINT/SIGTERM so every child shuts down gracefully. A second signal kills the
children and exits at once.

A child exits when its supervisor dies (on Linux the kernel tells it at once, through
``PR_SET_PDEATHSIG``; elsewhere it notices within a second), so a killed supervisor leaves no
orphans taking jobs beside its restarted self. Each child reports its counts when it ends, and
``run()`` returns their sum.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from quick_queue.consumer.parent import exit_with_parent
from quick_queue.consumer.runner import Consumer
from quick_queue.consumer.signals import install_stop_handlers
from quick_queue.context import QueueContext
from quick_queue.errors import ConfigurationError
from quick_queue.events import Summary
from quick_queue.kv import open as open_db

log = logging.getLogger("quick_queue.worker")
RESTART_BACKOFF_MAX = 10.0
SETTLE_MARGIN = 15.0  # seconds past shutdown_grace a child gets to hand its leases back


def _child(context: QueueContext, concurrency: int, index: int, parent: int,
           results: Any) -> None:
    # Runs in the forked child: a fresh database, the same queue settings and handlers.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        db = open_db(context.db.url)
        seed = None if context.seed is None else context.seed * 1_000 + index
        consumer = Consumer(context.with_db(db, seed=seed), concurrency)
        restore = install_stop_handlers(consumer.stop)
        # Ctrl-C reaches the whole process group: the supervisor alone takes SIGINT and
        # forwards a SIGTERM, which a child would otherwise take as a second, forcing signal.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        exit_with_parent(parent, consumer.stop)
        try:
            summary = consumer.run()
        finally:
            restore()
        results.put(summary.extra | _known_counts(summary))
        db.close()
    except BaseException:
        log.exception("consumer process %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
    # Skip the inherited objects' finalizers (the parent's SQLite connections among them).
    os._exit(code)


def _known_counts(summary: Summary) -> dict[str, int]:
    return {k: v for k, v in vars(summary).items() if isinstance(v, int)
            and not isinstance(v, bool)}


class _Supervisor:
    def __init__(self, context: QueueContext, concurrency: int, processes: int) -> None:
        self.context = context
        self.concurrency = concurrency
        self.mp: Any = multiprocessing.get_context("fork")
        self.results = self.mp.SimpleQueue()
        self.stop = threading.Event()
        self.children: list[BaseProcess] = []
        self.started = [time.monotonic()] * processes
        self.failures = [0] * processes
        self.counts: dict[str, int] = {}

    def start(self, index: int) -> BaseProcess:
        process: BaseProcess = self.mp.Process(
            target=_child, name="quick_queue-consumer", daemon=False,
            args=(self.context, self.concurrency, index, os.getpid(), self.results),
        )
        process.start()
        self.started[index] = time.monotonic()
        return process

    def on_signal(self, signum: int, frame: object) -> None:
        if not self.stop.is_set():
            self.stop.set()
            return
        log.warning("second %s: killing the consumer processes; the leases of their running "
                    "jobs expire and the jobs run again", signal.Signals(signum).name)
        for process in self.children:
            if process.is_alive():
                process.kill()
        os._exit(128 + signum)

    def watch(self) -> None:
        """Restart children that die, with a growing delay for one that keeps dying."""
        while not self.stop.is_set():
            for i, process in enumerate(self.children):
                if process.is_alive():
                    continue
                self._collect()
                lived = time.monotonic() - self.started[i]
                self.failures[i] = self.failures[i] + 1 if lived < 5 else 0
                delay = (min(RESTART_BACKOFF_MAX, 0.1 * (2 ** self.failures[i]))
                         if self.failures[i] else 0)
                log.warning("consumer process %s exited with %s after %.1f s; restarting in "
                            "%.1f s", process.pid, process.exitcode, lived, delay)
                if delay and self.stop.wait(delay):
                    return
                self.children[i] = self.start(i)
            self.stop.wait(0.2)

    def shut_down(self) -> None:
        for process in self.children:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.context.settings.shutdown_grace + SETTLE_MARGIN
        for process in self.children:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("consumer process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        self._collect()

    def _collect(self) -> None:
        while not self.results.empty():
            for name, value in self.results.get().items():
                self.counts[name] = self.counts.get(name, 0) + value


def run_processes(context: QueueContext, concurrency: int, processes: int) -> Summary:
    """Run ``processes`` consumers of ``concurrency`` each until SIGINT/SIGTERM; returns the
    sum of their summaries."""
    url = context.db.url
    if not url or url.startswith("memory:"):
        raise ConfigurationError(
            "processes > 1 needs a database other processes can open "
            "(sqlite:///path.db or fdb://), not memory://"
        )
    supervisor = _Supervisor(context, concurrency, processes)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, supervisor.on_signal)
    try:
        supervisor.children = [supervisor.start(i) for i in range(processes)]
        supervisor.watch()
    finally:
        supervisor.shut_down()
        for sig, old in previous.items():
            signal.signal(sig, old)
    return Summary.of(supervisor.counts)
