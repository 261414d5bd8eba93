"""Several consumer processes under one supervisor: ``JobQueue.run(processes=N)``.

Python threads share one interpreter lock, so past about one core of queue work a worker needs
processes. The supervisor forks N children, each opening the database afresh (a SQLite
connection must not cross a fork) and running a ``Consumer``. On a database whose client does
not survive ``fork()`` (FoundationDB: its network thread stays behind in the parent, and a
forked child would wait forever for its first answer), the children are *spawned* instead: a
fresh interpreter that gets the URL, queue name, settings, clock, the handlers' import paths
and the logging set-up (``ChildSpec``), imports the handlers and opens the database itself.
The supervisor restarts a child that dies (a
job that kills its process loses no work: its lease expires and another consumer takes it) and
asks every child to shut down gracefully on SIGINT/SIGTERM (with ``SUPERVISOR_STOP``, which a
child never takes for a second signal: see ``consumer.signals``). A second signal kills the
children and exits at once.

A child exits when its supervisor dies (on Linux the kernel tells it at once, through
``PR_SET_PDEATHSIG``; elsewhere it notices within a second), so a killed supervisor leaves no
orphans taking jobs beside its restarted self. Each child reports its counts when it ends, and
``run()`` returns their sum.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from quick_queue.clock import Clock, StoreClock
from quick_queue.consumer.parent import exit_with_parent
from quick_queue.consumer.runner import Consumer
from quick_queue.consumer.signals import SUPERVISOR_STOP, install_stop_handlers
from quick_queue.context import QueueContext
from quick_queue.errors import ConfigurationError
from quick_queue.events import Summary
from quick_queue.jobs import Registry
from quick_queue.kv import open as open_db
from quick_queue.settings import Settings

log = logging.getLogger("quick_queue.worker")
RESTART_BACKOFF_MAX = 10.0
SETTLE_MARGIN = 15.0  # seconds past shutdown_grace a child gets to hand its leases back


#: (stream name, level, formatter) of one handler the supervisor's logging writes through.
LogHandler = tuple[str, int, logging.Formatter]


@dataclass(frozen=True)
class ChildSpec:
    """What a spawned child needs to rebuild the queue (it inherits nothing): ``clock`` None
    means the store's clock on the child's own connection; ``handlers`` are import paths
    (``module:qualname``); ``log`` is the ``quick_queue`` logger's level, propagation and
    stream handlers."""

    url: str
    name: str
    settings: Settings
    handlers: tuple[str, ...]
    clock: Clock | None
    seed: int | None
    log: tuple[int, bool, tuple[LogHandler, ...]]
    setup: tuple[str, ...] = ()  # ``module:function(context)`` run in the child (in_each_child)

    @classmethod
    def of(cls, context: QueueContext) -> ChildSpec:
        clock = None if isinstance(context.clock, StoreClock) else context.clock
        try:
            pickle.dumps(clock)
        except Exception as error:
            raise ConfigurationError(
                f"processes > 1 on {context.db.url} starts fresh (spawned) processes, which "
                f"need the queue's clock pickled: {type(context.clock).__name__} cannot be "
                f"({error})"
            ) from error
        paths = tuple(_import_path(h, context.db.url) for h in context.registry.handlers())
        return cls(context.db.url, context.name, context.settings, paths, clock,
                   context.seed, _log_setup(), tuple(_CHILD_SETUP))

    def context(self, index: int) -> QueueContext:
        """The queue in the spawned child, on a database opened here."""
        _apply_log_setup(self.log)
        handlers = [_resolve(path) for path in self.handlers]
        db = open_db(self.url)
        seed = None if self.seed is None else self.seed * 1_000 + index
        clock = StoreClock(db) if self.clock is None else self.clock
        context = QueueContext(db, self.name, self.settings, clock, Registry(handlers), seed)
        for path in self.setup:
            _resolve(path)(context)
        return context


# What a forked child inherits from its parent's memory (a ``queue.events`` subscription, such
# as the worker's ``--metrics-port`` counts), a spawned one must set up again: these callables
# (import paths of ``function(context)``) run in each spawned child once its queue is built.
_CHILD_SETUP: list[str] = []


def in_each_child(path: str) -> None:
    """Run ``module:function`` with the child's ``QueueContext`` in each child spawned from
    now on (on FoundationDB; forked children inherit the parent's set-up instead)."""
    if path not in _CHILD_SETUP:
        _CHILD_SETUP.append(path)


def _resolve(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _import_path(handler: type, url: str) -> str:
    """``module:qualname`` of ``handler``, checked to import back to the same class (a spawned
    child finds its handlers by importing them)."""
    path = f"{handler.__module__}:{handler.__qualname__}"
    try:
        found = _resolve(path)
    except (ImportError, AttributeError):
        found = None
    main = sys.modules.get("__main__")
    if handler.__module__ == "__main__" and not getattr(main, "__file__", None):
        found = None  # python -c, a REPL: a spawned child has no script to import again
    if found is not handler:
        raise ConfigurationError(
            f"processes > 1 on {url} starts fresh (spawned) processes, which import their "
            f"handlers: {handler.__qualname__} (module {handler.__module__}) cannot be imported "
            "by name; define it at the top level of a module"
        )
    return path


def _stream(name: str) -> Any:
    return sys.stderr if name == "stderr" else sys.stdout


def _log_setup() -> tuple[int, bool, tuple[LogHandler, ...]]:
    logger = logging.getLogger("quick_queue")
    kept: list[LogHandler] = []
    for handler in logger.handlers:
        stream = getattr(handler, "stream", None)
        name = next((n for n in ("stderr", "stdout") if _stream(n) is stream), None)
        if name is None or handler.formatter is None:
            continue  # files, sockets, captured streams: nothing a fresh process can reopen
        try:
            pickle.dumps(handler.formatter)
        except Exception:  # noqa: BLE001 - an unpicklable formatter: the default one
            kept.append((name, handler.level, logging.Formatter()))
            continue
        kept.append((name, handler.level, handler.formatter))
    return logger.level, logger.propagate, tuple(kept)


def _apply_log_setup(setup: tuple[int, bool, tuple[LogHandler, ...]]) -> None:
    level, propagate, handlers = setup
    logger = logging.getLogger("quick_queue")
    logger.setLevel(level)
    logger.propagate = propagate
    for name, handler_level, formatter in handlers:
        handler = logging.StreamHandler(_stream(name))
        handler.setLevel(handler_level)
        handler.setFormatter(formatter)
        logger.addHandler(handler)


def _child(source: QueueContext | ChildSpec, concurrency: int, index: int, parent: int,
           results: Any) -> None:
    # Runs in the child: a fresh database, the same queue settings and handlers (forked: the
    # parent's context; spawned: rebuilt from its spec).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        if isinstance(source, ChildSpec):
            context = source.context(index)
            db = context.db
        else:
            db = open_db(source.db.url)
            seed = None if source.seed is None else source.seed * 1_000 + index
            context = source.with_db(db, seed=seed)
        consumer = Consumer(context, concurrency)
        restore = install_stop_handlers(consumer.stop, supervised=True)
        # Ctrl-C reaches the whole process group: the supervisor alone takes SIGINT and asks
        # the children to stop (SUPERVISOR_STOP).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        exit_with_parent(parent, consumer.stop)
        try:
            summary = consumer.run()
        finally:
            restore()
        results.send(summary.extra | _known_counts(summary))
        db.close()
    except BaseException:
        log.exception("consumer process %d failed", os.getpid())
        code = 1
    finally:
        logging.shutdown()
    if isinstance(source, ChildSpec):
        # A spawned child inherited nothing: a normal exit, whose finalizers unlink the named
        # semaphores the FoundationDB binding makes per thread (else multiprocessing's resource
        # tracker reports them leaked).
        sys.exit(code)
    # Skip the inherited objects' finalizers (the parent's SQLite connections among them).
    os._exit(code)


def _known_counts(summary: Summary) -> dict[str, int]:
    return {k: v for k, v in vars(summary).items() if isinstance(v, int)
            and not isinstance(v, bool)}


class _Supervisor:
    def __init__(self, context: QueueContext, concurrency: int, processes: int) -> None:
        self.context = context
        self.concurrency = concurrency
        self.spawn = not context.db.reopen_after_fork
        self.source: QueueContext | ChildSpec = ChildSpec.of(context) if self.spawn else context
        self.mp: Any = multiprocessing.get_context("spawn" if self.spawn else "fork")
        # One pipe per child for its counts (not a SimpleQueue: its lock is a named semaphore,
        # which a spawning supervisor's resource tracker reports as leaked at exit, and a child
        # killed while holding it would block its siblings' reports).
        self.results: list[Any] = []
        self.stop = threading.Event()
        self.children: list[BaseProcess] = []
        self.started = [time.monotonic()] * processes
        self.failures = [0] * processes
        self.counts: dict[str, int] = {}

    def start(self, index: int) -> BaseProcess:
        reader, writer = self.mp.Pipe(duplex=False)
        process: BaseProcess = self.mp.Process(
            target=_child, name="quick_queue-consumer", daemon=False,
            args=(self.source, self.concurrency, index, os.getpid(), writer),
        )
        process.start()
        writer.close()  # the child's end: EOF here once it exits
        self.results.append(reader)
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
                os.kill(process.pid, SUPERVISOR_STOP)
        deadline = time.monotonic() + self.context.settings.shutdown_grace + SETTLE_MARGIN
        for process in self.children:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("consumer process %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        self._collect()

    def _collect(self) -> None:
        for reader in list(self.results):
            try:
                while reader.poll():
                    for name, value in reader.recv().items():
                        self.counts[name] = self.counts.get(name, 0) + value
            except (EOFError, OSError):  # that child is gone and said all it had to say
                self.results.remove(reader)
                reader.close()


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
