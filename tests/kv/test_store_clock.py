"""The read-version clock FoundationDB's ``store_time`` uses, on the embedded engine with a
controlled version source (versions advance 1,000,000 per second as FoundationDB's do) and
per-"process" wall and monotonic clocks, so skew, steps and version jumps are set exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import TRANSACTION_TIMED_OUT, KVError
from quick_queue.kv.store_clock import ANCHOR_KEY, OFFSET_WINDOW, OUTAGE_QUIET, VersionClock

T0 = 1_800_000_000.0


class Cluster:
    """The shared read version (what the cluster would hand out)."""

    def __init__(self) -> None:
        self.version = 5_000_000_000

    def advance(self, seconds: float) -> None:
        self.version += int(seconds * 1_000_000)

    def read_version(self, tr: Transaction) -> int:
        tr.get_read_version()  # the engine's own snapshot, so reads happen at one version
        return self.version


class Host:
    """One process's own clocks: a wall clock (maybe skewed or stepped) and a monotonic one."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def db() -> Iterator[Database]:
    with kv.open("memory://") as database:
        yield database


def _clock(db: Database, cluster: Cluster, host: Host) -> VersionClock:
    return VersionClock(
        db, read_version=cluster.read_version, wall=lambda: host.wall, monotonic=lambda: host.mono
    )


def test_the_first_reading_anchors_to_that_hosts_clock(db: Database) -> None:
    cluster, host = Cluster(), Host(T0)
    clock = _clock(db, cluster, host)
    assert clock.now() == T0
    assert db.transact(lambda tr: tr.get(ANCHOR_KEY)) is not None
    cluster.advance(2.5)
    host.advance(2.5)
    assert clock.now() == pytest.approx(T0 + 2.5, abs=1e-3)


def test_hosts_with_skewed_and_stepped_clocks_agree(db: Database) -> None:
    cluster, a, b = Cluster(), Host(T0), Host(T0 + 300)  # b's clock is 5 minutes ahead
    first, second = _clock(db, cluster, a), _clock(db, cluster, b)
    assert first.now() == T0
    assert second.now() == T0
    cluster.advance(10)
    a.advance(10)
    b.advance(10)
    b.wall -= 3600  # b's clock steps an hour back
    assert first.now() == pytest.approx(T0 + 10, abs=1e-3)
    assert second.now() == pytest.approx(T0 + 10, abs=1e-3)


def test_a_version_jump_does_not_jump_the_time(db: Database) -> None:
    cluster, a, b = Cluster(), Host(T0), Host(T0)
    first = _clock(db, cluster, a)
    assert first.now() == T0
    cluster.advance(100)  # a recovery: 100 s of versions at once, 1 s of real time
    cluster.advance(1)
    a.advance(1)
    assert first.now() == pytest.approx(T0 + 1, abs=1e-3)
    late = _clock(db, cluster, b)  # a process that starts after the jump reads the new anchor
    assert late.now() == pytest.approx(T0 + 1, abs=1e-3)
    cluster.advance(3)
    a.advance(3)
    assert first.now() == pytest.approx(T0 + 4, abs=1e-3)


def test_a_new_cluster_reanchors_without_going_back(db: Database) -> None:
    cluster, host = Cluster(), Host(T0)
    clock = _clock(db, cluster, host)
    assert clock.now() == T0  # anchored at the first reading
    cluster.advance(60)
    host.advance(60)
    host.wall -= 30  # this host's clock steps back meanwhile: the store's time does not
    assert clock.now() == pytest.approx(T0 + 60, abs=1e-3)
    cluster.version = 1_000  # a new cluster holding the restored data: versions start over
    host.advance(1)
    assert clock.now() == pytest.approx(T0 + 61, abs=1e-3)
    cluster.advance(1)
    host.advance(1)
    assert clock.now() == pytest.approx(T0 + 62, abs=1e-3)


def test_a_recent_reading_is_extended_locally(db: Database) -> None:
    cluster, host = Cluster(), Host(T0)
    asked: list[int] = []

    def counting(tr: Transaction) -> int:
        asked.append(1)
        return cluster.read_version(tr)

    clock = VersionClock(db, read_version=counting, wall=lambda: host.wall,
                         monotonic=lambda: host.mono)
    assert clock.now() == T0
    host.mono += 0.01  # within REUSE_SECONDS: no second round trip
    assert clock.now() == pytest.approx(T0 + 0.01, abs=1e-6)
    assert len(asked) == 1
    host.mono += 1
    cluster.advance(1.01)
    assert clock.now() == pytest.approx(T0 + 1.01, abs=1e-3)
    assert len(asked) == 2


def test_a_read_only_clock_never_writes_its_anchor(db: Database) -> None:
    cluster, host = Cluster(), Host(T0)
    clock = VersionClock(db, read_version=cluster.read_version, wall=lambda: host.wall,
                         monotonic=lambda: host.mono, writable=False)
    assert clock.now() == T0
    assert db.transact(lambda tr: tr.get(ANCHOR_KEY)) is None


def test_the_time_runs_on_between_the_commits_of_an_idle_cluster(db: Database) -> None:
    """An idle cluster's read version stands still between its empty commits (~2 s apart)
    and then jumps: the store's time runs on smoothly meanwhile, never backwards."""
    cluster, host = Cluster(), Host(T0)
    clock = _clock(db, cluster, host)
    assert clock.now() == T0
    seen = []
    for _ in range(19):  # 1.9 s without a commit: the version does not move
        host.advance(0.1)
        seen.append(clock.now())
    assert seen[-1] == pytest.approx(T0 + 1.9, abs=1e-3)
    assert seen == sorted(seen)
    cluster.advance(2.0)  # the empty commit: versions catch up with the time
    host.advance(0.1)
    assert clock.now() == pytest.approx(T0 + 2.0, abs=1e-3)


def test_a_stale_reading_is_caught_up_by_a_fresh_one_without_a_jump(db: Database) -> None:
    cluster, a, b = Cluster(), Host(T0), Host(T0)
    first = _clock(db, cluster, a)
    assert first.now() == T0
    for host in (a, b):
        host.advance(1.5)
    late = _clock(db, cluster, b)  # first reading 1.5 s after the last commit: behind
    assert late.now() == pytest.approx(T0, abs=1e-3)
    cluster.advance(1.6)  # a commit; both hosts read it soon after
    for host in (a, b):
        host.advance(0.1)
    assert first.now() == pytest.approx(T0 + 1.6, abs=1e-3)
    assert late.now() == pytest.approx(T0 + 1.6, abs=1e-3)
    cluster.advance(0.5)  # no commit after this one for a while: both carry it on alike
    for host in (a, b):
        host.advance(0.5)
    assert first.now() == pytest.approx(late.now(), abs=1e-3)


def test_a_fast_monotonic_clock_is_not_carried_on_for_long(db: Database) -> None:
    """Only recent readings are carried on: a host whose monotonic clock runs 1 % fast stays
    within 2 * OFFSET_WINDOW * 1 % of the versions' time."""
    cluster, host = Cluster(), Host(T0)
    clock = _clock(db, cluster, host)
    assert clock.now() == T0
    for _ in range(600):  # 60 s
        cluster.advance(0.1)
        host.advance(0.101)
        ahead = clock.now() - (T0 + (cluster.version - 5_000_000_000) / 1e6)
        assert 0 <= ahead <= 2 * OFFSET_WINDOW * 0.01 + 1e-6


def test_a_process_without_a_recent_reading_takes_a_fresh_one_from_a_commit(
    db: Database,
) -> None:
    """Read versions lag an idle cluster's time by up to ~2 s; a commit's version does not.
    A process's first reading (and its first after a long pause) commits to get it, so a
    worker started on an idle cluster is not seconds behind the others."""
    cluster, host = Cluster(), Host(T0)
    stale = [0]  # seconds the read version lags the cluster's now
    commits: list[int] = []

    def read_version(tr: Transaction) -> int:
        return cluster.read_version(tr) - int(stale[0] * 1_000_000)

    def commit_version(tr: Transaction) -> int:
        commits.append(1)
        return cluster.read_version(tr)

    first = _clock(db, cluster, host)
    assert first.now() == T0  # anchors the store at T0
    cluster.advance(1.5)
    host.advance(1.5)
    stale[0] = 1.5  # no commit for 1.5 s
    late = VersionClock(db, read_version=read_version, commit_version=commit_version,
                        wall=lambda: host.wall, monotonic=lambda: host.mono)
    assert late.now() == pytest.approx(T0 + 1.5, abs=1e-3)  # not T0
    assert len(commits) == 1
    host.advance(0.1)
    cluster.advance(0.1)
    stale[0] = 0.5
    assert late.now() == pytest.approx(T0 + 1.6, abs=1e-3)  # carried on, no commit
    assert len(commits) == 1
    host.advance(2 * OFFSET_WINDOW)  # a long pause without a reading: fresh again
    cluster.advance(2 * OFFSET_WINDOW)
    stale[0] = 1.9
    assert late.now() == pytest.approx(T0 + 1.6 + 2 * OFFSET_WINDOW, abs=1e-3)
    assert len(commits) == 2


@pytest.mark.fdb
def test_a_fresh_reading_is_a_commits_version_on_foundationdb(fdb_url: str) -> None:
    """The default fresh reading on the real binding: a blind write's commit version (from
    its versionstamp), at or after any read version before it, and visible to reads after."""
    from quick_queue.kv.store_clock import _committed

    with kv.open(fdb_url) as database:
        before = database.create_transaction().get_read_version()
        version = _committed(database.create_transaction())
        after = database.create_transaction().get_read_version()
        assert before <= version <= after
        assert version - before < 5_000_000  # versions are about microseconds: within 5 s


def test_a_fresh_reading_the_cluster_does_not_answer_carries_the_last_one_on(
    db: Database,
) -> None:
    """After a long pause the fresh reading's commit times out (the cluster is gone): the
    last reading goes on by the monotonic clock, as when a read version times out, and the
    time is not asked again for OUTAGE_QUIET s."""
    cluster, host = Cluster(), Host(T0)
    down = [False]
    asked: list[str] = []

    def commit_version(tr: Transaction) -> int:
        asked.append("commit")
        if down[0]:
            raise KVError(TRANSACTION_TIMED_OUT, "no answer (cluster unreachable?)")
        return cluster.read_version(tr)

    def read_version(tr: Transaction) -> int:
        asked.append("read")
        return cluster.read_version(tr)

    clock = VersionClock(db, read_version=read_version, commit_version=commit_version,
                         wall=lambda: host.wall, monotonic=lambda: host.mono)
    assert clock.now() == T0
    assert asked == ["commit"]  # the first reading: a fresh one, no read version needed
    down[0] = True
    host.advance(3 * OFFSET_WINDOW)
    assert clock.now() == pytest.approx(T0 + 3 * OFFSET_WINDOW, abs=1e-3)
    host.advance(OUTAGE_QUIET / 2)
    assert clock.now() == pytest.approx(T0 + 3 * OFFSET_WINDOW + OUTAGE_QUIET / 2, abs=1e-3)
    assert asked == ["commit", "commit"]  # one timeout, then quiet
