"""The store's time while FoundationDB does not answer (found by the kill-the-server test,
tests/fdb/test_fdb_server_killed.py: a worker thread asking the time after its job died of
the 1031 timeout, and with it the consumer's whole pool). On the embedded engine with a version
source that times out, as the unreachable cluster's does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import TRANSACTION_TIMED_OUT, KVError
from quick_queue.kv.store_clock import VersionClock

T0 = 1_800_000_000.0


class Cluster:
    def __init__(self) -> None:
        self.version = 5_000_000_000
        self.down = False
        self.asked = 0

    def read_version(self, tr: Transaction) -> int:
        self.asked += 1
        if self.down:
            raise KVError(TRANSACTION_TIMED_OUT, "no answer (cluster unreachable?)")
        tr.get_read_version()
        return self.version


@pytest.fixture
def db() -> Iterator[Database]:
    with kv.open("memory://") as database:
        yield database


def test_an_unreachable_cluster_carries_the_last_reading_on(db: Database) -> None:
    cluster, mono = Cluster(), [100.0]
    clock = VersionClock(db, read_version=cluster.read_version, wall=lambda: T0,
                         monotonic=lambda: mono[0])
    assert clock.now() == T0
    cluster.down = True
    mono[0] += 3.0
    assert clock.now() == pytest.approx(T0 + 3.0)  # before: KVError 1031 out of now()
    asked = cluster.asked
    mono[0] += 0.5
    assert clock.now() == pytest.approx(T0 + 3.5)  # and it does not wait on the cluster again
    assert cluster.asked == asked                  # (each wait is a 10 s timeout) for a while
    cluster.down = False
    cluster.version += 5_000_000  # 5 s of versions since the first reading
    mono[0] += 1.5
    assert clock.now() == pytest.approx(T0 + 5.0)
    assert cluster.asked == asked + 1


def test_with_no_reading_yet_the_timeout_is_raised(db: Database) -> None:
    cluster = Cluster()
    cluster.down = True
    clock = VersionClock(db, read_version=cluster.read_version, wall=lambda: T0)
    with pytest.raises(KVError) as raised:
        clock.now()
    assert raised.value.code == TRANSACTION_TIMED_OUT
