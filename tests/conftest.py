"""Shared fixtures: a ManualClock, databases, and a JobQueue factory.

The FoundationDB leg: with ``QUICK_QUEUE_FDB_CLUSTER_FILE`` set, every test that takes ``db``,
``db_url`` or ``file_db`` runs twice, on the embedded engine and (marked ``fdb``, id ``fdb``) on
that cluster, each FDB test starting from a cluster with no queue in it (``tests/fdb/cluster.py``
says when that clearing is allowed). Without the variable nothing changes (same tests, same ids)
but one line at the end; with it but no cluster answering, the FDB tests are left out with one
line. A test that is about SQLite itself carries ``@pytest.mark.sqlite_only("why")`` and is
skipped in the FDB leg with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import quick_queue as qq
from tests.fdb import cluster

FDB_LEG = cluster.named_cluster_file() is not None

# Property tests check results, never speed: hypothesis's default 200 ms deadline per example
# failed a packing test on a loaded 2-core machine (speed is for the benchmarks in scripts/).
settings.register_profile("quick_queue", deadline=None)
settings.load_profile("quick_queue")


@pytest.fixture(autouse=True)
def _quick_queue_logging() -> Iterator[None]:
    """Each test starts and ends with the ``quick_queue`` logger as it found it: a CLI test's
    ``setup_logging`` would otherwise leave a handler on a closed captured stream behind."""
    logger = logging.getLogger("quick_queue")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[2]
    # setLevel, not an assignment: it also clears every logger's cached isEnabledFor answers,
    # which would otherwise keep a level of this test alive in the next one
    logger.setLevel(saved[1])


@pytest.fixture
def clock() -> qq.ManualClock:
    """A clock that moves only when the test says so."""
    return qq.ManualClock()


if FDB_LEG:
    @pytest.fixture(params=["embedded", pytest.param("fdb", marks=pytest.mark.fdb)])
    def queue_engine(request: pytest.FixtureRequest) -> str:
        """Which engine the queue tests run on: the embedded one, or the FoundationDB leg."""
        return str(request.param)
else:
    @pytest.fixture
    def queue_engine() -> str:
        """Which engine the queue tests run on (no FoundationDB leg: the embedded one)."""
        return "embedded"


def _empty_cluster() -> Iterator[qq.Database]:
    why = cluster.unavailable()
    if why is not None:  # left out at collection; a test that asks anyway is skipped
        pytest.skip(why)
    try:
        with cluster.empty_cluster() as database:
            yield database
    except cluster.Refused as refused:
        pytest.fail(str(refused), pytrace=False)


@pytest.fixture
def empty_fdb(queue_engine: str) -> Iterator[qq.Database | None]:
    """In the FDB leg, the cluster with no queue in it, held for this test (None otherwise)."""
    if queue_engine != "fdb":
        yield None
        return
    yield from _empty_cluster()


@pytest.fixture
def fdb_queue_url() -> Iterator[str]:
    """For tests about FoundationDB only (tests/fdb): the cluster's URL, with no queue in it,
    held for this test."""
    for _ in _empty_cluster():
        yield cluster.url()


@pytest.fixture
def db(clock: qq.ManualClock, queue_engine: str,
       request: pytest.FixtureRequest) -> Iterator[qq.Database]:
    """An ephemeral embedded database (one process) whose time is the ``clock`` fixture:
    leases follow the store's time, so moving the clock moves them too. In the FDB leg: the
    cluster, its time the ``clock`` fixture too."""
    if queue_engine == "fdb":
        request.getfixturevalue("empty_fdb")
        database = qq.open(cluster.url(), clock=clock)
    else:
        database = qq.open("memory://", clock=clock)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def db_url(tmp_path: Path, queue_engine: str, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh SQLite file that several processes can open (in the FDB leg: the
    cluster's URL, with no queue in it)."""
    if queue_engine == "fdb":
        request.getfixturevalue("empty_fdb")
        return cluster.url()
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


FDB_ONLY = Path(__file__).parent / "fdb"


def _in_fdb_leg(item: pytest.Item) -> bool:
    """A test of the FDB leg, or one of tests/fdb on the named cluster (a test there that
    starts a server of its own skips by itself)."""
    if FDB_ONLY in Path(str(item.path)).parents:
        return "fdb_queue_url" in getattr(item, "fixturenames", ())
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("queue_engine") == "fdb"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The FDB leg: SQLite-specific tests skipped with their reason; with no cluster answering,
    the whole leg left out (one line at the end, not one skip per test)."""
    leg = [item for item in items if _in_fdb_leg(item)]
    why = cluster.unavailable()
    if why is not None:
        if not FDB_LEG and not leg:
            cluster.left_out("the queue tests' fdb leg", 0, why)
            return
        config.hook.pytest_deselected(items=leg)
        dropped = set(map(id, leg))
        items[:] = [item for item in items if id(item) not in dropped]
        cluster.left_out("queue tests of the fdb leg", len(leg), why)
        return
    for item in leg:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else "about SQLite itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite-specific: {reason}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = cluster.left_out_line()
    if line is not None:
        terminalreporter.write_line(line)
