"""Shared fixtures: a ManualClock, databases, and a JobQueue factory."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq


@pytest.fixture(autouse=True)
def _quick_queue_logging() -> Iterator[None]:
    """Each test starts and ends with the ``quick_queue`` logger as it found it: a CLI test's
    ``setup_logging`` would otherwise leave a handler on a closed captured stream behind."""
    logger = logging.getLogger("quick_queue")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture
def clock() -> qq.ManualClock:
    """A clock that moves only when the test says so."""
    return qq.ManualClock()


@pytest.fixture
def db(clock: qq.ManualClock) -> Iterator[qq.Database]:
    """An ephemeral embedded database (one process) whose time is the ``clock`` fixture:
    leases follow the store's time, so moving the clock moves them too."""
    database = qq.open("memory://", clock=clock)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a fresh SQLite file that several processes can open."""
    return f"sqlite:///{tmp_path}/q.db"


@pytest.fixture
def file_db(db_url: str) -> Iterator[qq.Database]:
    database = qq.open(db_url)
    try:
        yield database
    finally:
        database.close()


QueueFactory = Callable[..., qq.JobQueue]


@pytest.fixture
def make_queue(db: qq.Database, clock: qq.ManualClock) -> QueueFactory:
    """``make_queue(*handlers, db=..., clock=..., name=..., **settings)``: a JobQueue on the
    ``db`` fixture and the ``clock`` fixture unless told otherwise."""

    def make(*handlers: type, **options: Any) -> qq.JobQueue:
        database = options.pop("db", db)
        use_clock = options.pop("clock", clock)
        name = options.pop("name", "default")
        return qq.JobQueue(database, name=name, jobs=list(handlers), clock=use_clock, **options)

    return make


class Background:
    """``fn(*args, **kwargs)`` running in a daemon thread; ``result()`` joins it and returns
    what it returned (or raises what it raised)."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to result()
            self._error = error

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float = 15.0) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"background call still running after {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture
def background() -> Iterator[Callable[..., Background]]:
    """``background(fn, *args)``: run a call (a drain, a run) in a thread."""
    started: list[Background] = []

    def start(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Background:
        call = Background(fn, *args, **kwargs)
        started.append(call)
        return call

    yield start
    for call in started:
        call.thread.join(5)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    """Poll ``condition`` every few ms until it is truthy (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """``wait_until(condition, timeout=10, what=...)``: a bounded poll."""
    return wait_until
