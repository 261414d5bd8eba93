"""One time authority for leases (issue 8, item 8; DESIGN.md §8): leases are stamped, extended
and expired on the store's time, never on a worker's wall clock, and the embedded engine's
store time is the host's boot clock anchored once per boot in the file, which neither a
wall-clock step nor a process with a skewed clock moves.

(The same with real worker processes: tests/acceptance/test_clock_skew.py.)"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.kv.host_clock import BOOT_ROW, MONO_ROW, WALL_ROW, HostClock

SKEW = 300.0  # a wall clock five minutes ahead


class Dial:
    """A settable stand-in for a clock function (a wall clock that steps, a boot clock)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def _store(tmp_path: Path) -> str:
    path = tmp_path / "q.db"
    qq.open(f"sqlite:///{path}").close()  # the store's tables
    return str(path)


def _connector(path: str) -> Callable[[], sqlite3.Connection]:
    return lambda: sqlite3.connect(path, isolation_level=None)


# -- the embedded engine's clock --------------------------------------------------------------
def test_processes_with_skewed_wall_clocks_share_the_first_ones_anchor(tmp_path: Path) -> None:
    path = _store(tmp_path)
    boot = Dial(1000.0)
    right = HostClock(_connector(path), wall=lambda: 1_800_000_000.0, clock=boot, boot=lambda: 7)
    ahead = HostClock(_connector(path), wall=lambda: 1_800_000_000.0 + SKEW, clock=boot,
                      boot=lambda: 7)
    assert right.now() == 1_800_000_000.0
    boot.value += 2.5
    assert ahead.now() == right.now() == 1_800_000_002.5  # the skew does not count


def test_the_process_that_writes_the_anchor_tells_the_time_its_readers_do(
    tmp_path: Path,
) -> None:
    # readings that are not whole microseconds: the anchor is stored in microseconds
    path = _store(tmp_path)
    boot = Dial(1000.0000001)
    writer = HostClock(_connector(path), wall=lambda: 1_800_000_000.0000004, clock=boot,
                       boot=lambda: 7)
    first = writer.now()
    reader = HostClock(_connector(path), wall=lambda: 1_800_000_000.0, clock=boot,
                       boot=lambda: 7)
    assert reader.now() == writer.now() == first
    for step in (0.0000003, 0.25, 1.0000006):
        boot.value += step
        assert reader.now() == writer.now()


def test_a_wall_clock_step_does_not_move_the_store_time(tmp_path: Path) -> None:
    path = _store(tmp_path)
    wall, boot = Dial(1_800_000_000.0), Dial(50.0)
    clock = HostClock(_connector(path), wall=wall, clock=boot, boot=lambda: 7)
    assert clock.now() == 1_800_000_000.0
    for step in (-3600.0, +7200.0):  # back an hour, then forward two
        wall.value += step
        boot.value += 1.0
        later = HostClock(_connector(path), wall=wall, clock=boot, boot=lambda: 7)
        assert clock.now() == later.now() == 1_800_000_000.0 + boot.value - 50.0


def test_a_new_boot_takes_a_new_anchor(tmp_path: Path) -> None:
    path = _store(tmp_path)
    HostClock(_connector(path), wall=lambda: 1_800_000_000.0, clock=lambda: 5000.0,
              boot=lambda: 7).now()
    # After a reboot the boot clock starts again near zero; the wall clock went on.
    rebooted = HostClock(_connector(path), wall=lambda: 1_800_000_900.0, clock=lambda: 3.0,
                         boot=lambda: 8)
    assert rebooted.now() == 1_800_000_900.0
    rows = dict(sqlite3.connect(path).execute("SELECT name, value FROM qq_meta").fetchall())
    assert (rows[BOOT_ROW], rows[WALL_ROW], rows[MONO_ROW]) == (8, 1_800_000_900_000_000, 3_000_000)


@pytest.mark.parametrize(
    ("wall", "boot_clock", "same"),
    [(1_800_000_010.0, 5010.0, True), (1_800_000_010.0 + SKEW, 5010.0, True),
     (1_800_000_900.0, 3.0, False), (1_800_100_000.0, 6000.0, False)],
    ids=["same-boot", "same-boot-skewed", "boot-clock-reset", "boot-instant-moved"],
)
def test_without_a_boot_id_the_boot_is_recognised_by_its_clocks(
    tmp_path: Path, wall: float, boot_clock: float, same: bool
) -> None:
    path = _store(tmp_path)
    HostClock(_connector(path), wall=lambda: 1_800_000_000.0, clock=lambda: 5000.0,
              boot=lambda: None).now()
    other = HostClock(_connector(path), wall=lambda: wall, clock=lambda: boot_clock,
                      boot=lambda: None)
    assert other.now() == (1_800_000_010.0 if same else wall)


def test_a_read_only_store_reads_the_anchor_but_never_writes_one(tmp_path: Path) -> None:
    path = _store(tmp_path)
    before = (tmp_path / "q.db").read_bytes()
    reader = HostClock(_connector(path), read_only=True, wall=lambda: 1_800_000_000.0,
                       clock=lambda: 10.0, boot=lambda: 7)
    assert reader.now() == 1_800_000_000.0  # its own anchor
    assert (tmp_path / "q.db").read_bytes() == before
    HostClock(_connector(path), wall=lambda: 1_700_000_000.0, clock=lambda: 10.0,
              boot=lambda: 7).now()
    late_reader = HostClock(_connector(path), read_only=True, wall=lambda: 1_800_000_000.0,
                            clock=lambda: 12.0, boot=lambda: 7)
    assert late_reader.now() == 1_700_000_002.0  # the stored anchor wins


def test_a_store_that_cannot_be_read_falls_back_to_an_anchor_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    boot = Dial(10.0)
    clock = HostClock(_connector(str(tmp_path / "missing" / "q.db")), wall=lambda: 1e9,
                      clock=boot, boot=lambda: 7)
    assert clock.now() == 1e9
    boot.value = 11.0
    assert clock.now() == 1e9 + 1.0  # still never stepped
    assert "clock anchor" in caplog.text


def test_engine_store_time_is_shared_by_connections_and_close_to_the_wall_clock(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    first, second = qq.open(url), qq.open(url)
    try:
        a = first.store_time()
        b = second.store_time()
        c = first.store_time()
        assert a <= b <= c and c - a < 1.0
        assert abs(b - time.time()) < 5.0  # anchored on this boot's wall time
    finally:
        first.close()
        second.close()


# -- the consumer leases on the store's time ---------------------------------------------------
@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[qq.Database, qq.Database, qq.ManualClock]]:
    """Two connections to one store whose time is one test clock (the store's time)."""
    store_clock = qq.ManualClock()
    url = f"sqlite:///{tmp_path}/q.db"
    one, two = qq.open(url, clock=store_clock), qq.open(url, clock=store_clock)
    try:
        yield one, two, store_clock
    finally:
        one.close()
        two.close()


def test_a_worker_whose_own_clock_runs_ahead_does_not_take_a_running_job(
    shared: Any, background: Any
) -> None:
    db_one, db_two, store_clock = shared
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @qq.job(topic="long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append(meta.attempt)
            started.set()
            release.wait(10)

    # Each queue's own clock (what its producer uses) disagrees; the store's is one.
    honest = qq.JobQueue(db_one, jobs=[Long], clock=store_clock)
    ahead = qq.JobQueue(db_two, jobs=[Long], clock=qq.ManualClock(store_clock.now() + SKEW))
    job_id = honest.enqueue("t", "long", {})
    drain = background(honest.drain)
    assert started.wait(5)
    lease = honest.get_job("t", job_id)
    assert lease is not None and lease.lease_expires_at is not None
    assert lease.lease_expires_at.timestamp() == store_clock.now() + 30
    assert ahead.drain(timeout=5).completed == 0  # before: it took the job, 5 minutes "late"
    release.set()
    assert drain.result().completed == 1
    assert runs == [1]


def test_a_worker_whose_own_clock_stepped_back_keeps_its_lease(
    shared: Any, background: Any, wait_until: Any
) -> None:
    db_one, db_two, store_clock = shared
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @qq.job(topic="long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append(meta.attempt)
            started.set()
            release.wait(10)
            assert not meta.lease_lost.is_set()

    behind = qq.ManualClock(store_clock.now() - 3600)  # this worker's clock stepped back 1 h
    worker = qq.JobQueue(db_one, jobs=[Long], clock=behind)
    other = qq.JobQueue(db_two, jobs=[Long], clock=store_clock)
    job_id = other.enqueue("t", "long", {})
    drain = background(worker.drain)
    assert started.wait(5)
    for _ in range(3):  # 60 s of store time, twice the lease
        store_clock.advance(20)  # the store's time paces the keeper's rounds too
        wait_until(
            lambda: (i := worker.get_job("t", job_id)) is not None
            and i.lease_expires_at is not None
            and i.lease_expires_at.timestamp() == store_clock.now() + 30,
            what="the keeper to extend the lease on the store's time",
        )
        assert other.drain(timeout=5).completed == 0  # before: the lease was an hour old
    release.set()
    summary = drain.result()
    assert summary.completed == 1 and summary.stale == 0
    assert runs == [1]


def test_a_queue_tells_time_by_the_store_unless_given_a_clock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    first_clock, second_clock = qq.ManualClock(1_800_000_000.0), qq.ManualClock(1_900_000_000.0)
    with qq.open(url, clock=first_clock) as first, qq.open(url, clock=second_clock) as second:
        queue = qq.JobQueue(first)
        assert queue.clock.now() == 1_800_000_000.0  # due times on the workers' time
        job_id = queue.enqueue("t", "anything", {}, in_=5)
        info = queue.get_job("t", job_id)
        assert info is not None and info.due_at is not None
        assert info.due_at.timestamp() == 1_800_000_005.0
        assert queue.with_db(second).clock.now() == 1_900_000_000.0  # read where it runs
        own = qq.ManualClock(42.0)
        assert qq.JobQueue(first, clock=own).with_db(second).clock is own


# -- timeouts follow elapsed time, not a clock that steps -------------------------------------
@pytest.fixture
def real_db() -> Iterator[qq.Database]:
    database = qq.open("memory://")  # the store's own time
    try:
        yield database
    finally:
        database.close()


@pytest.mark.parametrize(("step", "timeout", "sleep"), [(-3600.0, 0.3, 1.0), (3600.0, 5.0, 0.3)],
                         ids=["back: still times out", "forward: no early timeout"])
def test_a_timeout_is_timed_on_elapsed_time_when_the_queue_clock_steps(
    real_db: qq.Database, step: float, timeout: float, sleep: float
) -> None:
    queue_clock = qq.ManualClock(time.time())  # the worker's own clock, stepped mid-run
    started = threading.Event()

    @qq.job(topic="timed", timeout=timeout, max_retries=0)
    class Timed:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.set()
            time.sleep(sleep)  # (ignores lease_lost, as a stuck handler would)

    queue = qq.JobQueue(real_db, jobs=[Timed], clock=queue_clock)
    job_id = queue.enqueue("t", "timed", {})
    stepper = threading.Thread(target=lambda: started.wait(5) and queue_clock.advance(step))
    stepper.start()
    summary = queue.drain(timeout=20)
    stepper.join()
    info = queue.get_job("t", job_id)
    if step < 0:  # before: the deadline was an hour away on the stepped clock
        assert (summary.failed, summary.completed) == (1, 0)
        assert info is not None and "timed out" in (info.reason or "")
    else:  # before: the step made it look an hour late, and it was failed at once
        assert (summary.failed, summary.completed) == (0, 1)
        assert info is None
