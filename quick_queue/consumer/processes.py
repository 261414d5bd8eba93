"""Several consumer processes under one supervisor: ``JobQueue.run(processes=N)``.

Python threads share one interpreter lock, so past about one core of queue work a worker needs
processes. The supervisor forks N children, each opening the database afresh (a SQLite
connection must not cross a fork) and running a ``Consumer``; it restarts a child that dies (a
job that kills its process loses no work: its lease expires and another consumer takes it) and
forwards SIGINT/SIGTERM so every child shuts down gracefully.
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

from quick_queue.consumer.runner import Consumer
from quick_queue.consumer.signals import install_stop_handlers
from quick_queue.context import QueueContext
from quick_queue.errors import ConfigurationError
from quick_queue.kv import open as open_db

log = logging.getLogger("quick_queue.worker")
RESTART_BACKOFF_MAX = 10.0


def _child(context: QueueContext, concurrency: int) -> None:
    # Runs in the forked child: a fresh database, the same queue settings and handlers.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        db = open_db(context.db.url)
        consumer = Consumer(context.with_db(db), concurrency)
        restore = install_stop_handlers(consumer.stop)
        try:
            consumer.run()
        finally:
            restore()
        db.close()
    except BaseException:
        log.exception("consumer process %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
    # Skip the inherited objects' finalizers (the parent's SQLite connections among them).
    os._exit(code)


def run_processes(context: QueueContext, concurrency: int, processes: int) -> None:
    url = context.db.url
    if not url or url.startswith("memory:"):
        raise ConfigurationError(
            "processes > 1 needs a database other processes can open "
            "(sqlite:///path.db or fdb://), not memory://"
        )
    ctx: Any = multiprocessing.get_context("fork")
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())

    def start() -> BaseProcess:
        process: BaseProcess = ctx.Process(
            target=_child, args=(context, concurrency), name="quick_queue-consumer", daemon=False
        )
        process.start()
        return process

    children = [start() for _ in range(processes)]
    started = [time.monotonic()] * processes
    failures = [0] * processes
    try:
        while not stop.is_set():
            for i, process in enumerate(children):
                if process.is_alive():
                    continue
                code = process.exitcode
                lived = time.monotonic() - started[i]
                failures[i] = failures[i] + 1 if lived < 5 else 0
                delay = min(RESTART_BACKOFF_MAX, 0.1 * (2 ** failures[i])) if failures[i] else 0
                log.warning("consumer process %s exited with %s after %.1f s; restarting in %.1f s",
                            process.pid, code, lived, delay)
                if delay and stop.wait(delay):
                    break
                children[i] = start()
                started[i] = time.monotonic()
            stop.wait(0.2)
    finally:
        for process in children:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + context.settings.shutdown_grace + 15
        for process in children:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("consumer process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        for sig, old in previous.items():
            signal.signal(sig, old)
