"""The guard of the queue tests' FoundationDB leg (tests/fdb/cluster.py): it clears keys only on
a cluster designated for tests, on a cluster of this test's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import quick_queue.kv as kv
from quick_queue.keys import pack
from tests.fdb import cluster

if TYPE_CHECKING:
    from tests.fdb.conftest import OwnServer

pytestmark = [pytest.mark.fdb, pytest.mark.slow]


def _put(url: str, key: bytes, value: bytes) -> None:
    with kv.open(url) as db:
        db.transact(lambda tr: tr.set(key, value))


def _get(url: str, key: bytes) -> bytes | None:
    with kv.open(url) as db:
        return db.transact(lambda tr: tr.get(key))


def test_a_cluster_with_queue_data_is_refused_and_left_alone(own_server: OwnServer) -> None:
    url = f"fdb://{own_server.cluster_file}"
    someones_job = pack(("qq", "orders", "i", "42"))
    _put(url, someones_job, b"precious")
    with pytest.raises(cluster.Refused, match="never designated for tests"):
        with cluster.empty_cluster(str(own_server.cluster_file)):
            pass
    assert _get(url, someones_job) == b"precious"
    assert _get(url, cluster.MARKER_KEY) is None


def test_an_empty_cluster_is_designated_and_then_cleared_before_each_test(
    own_server: OwnServer,
) -> None:
    url = f"fdb://{own_server.cluster_file}"
    kept = pack(("qq.kv", "change"))  # kv's own keys stay
    _put(url, kept, b"\x07" * 8)
    with cluster.empty_cluster(str(own_server.cluster_file)):
        pass
    assert _get(url, cluster.MARKER_KEY) is not None
    left_over = pack(("qq", "default", "i", "1"))
    _put(url, left_over, b"a previous test's job")
    _put(url, b"app/written", b"hello")
    with cluster.empty_cluster(str(own_server.cluster_file)) as db:
        assert db.transact(lambda tr: tr.get(left_over)) is None
        assert db.transact(lambda tr: tr.get(b"app/written")) is None
    assert _get(url, kept) == b"\x07" * 8
