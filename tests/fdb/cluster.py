"""The FoundationDB leg of the queue tests: which cluster, whether it opens, and the guard that
lets a test start from an empty queue on it.

The leg runs only when ``QUICK_QUEUE_FDB_CLUSTER_FILE`` names a cluster file (never the
platform's default cluster file: a test clears keys, so the cluster must be chosen on purpose).
Before each test of the leg every queue's keys (the tuple prefix ``("qq",)``) are cleared, which
is acceptable only on a cluster meant for tests, so the first use of a cluster checks it:

* it holds the marker key ``("qq.tests", "designated")``: a test cluster, go on;
* nothing is in the ranges a test clears (``CLEARED``: the queues ``("qq", name)``, their live
  workers ``("qqw", name)``, and the application keys the tests write, ``app/`` and
  ``order/``): the marker is written, and the cluster is a test cluster from then on;
* otherwise the leg refuses (``Refused``), saying how to clear the cluster by hand if it really
  is a test cluster.

kv's own keys (``("qq.kv", ...)``: the store clock's anchor, the change counter) are shared by
every process on the cluster and are not cleared. But the store's time drifts from the wall
clock when the cluster's versions lag (a starved or paused server: tens of seconds on a loaded
machine), and some tests compare a lease deadline with ``time.time()``; so a test starting on a
store more than ``MAX_DRIFT`` s off the wall clock re-anchors it to this host's clock (a jump
for other processes on the cluster, acceptable on a test cluster only).

Several test sessions may use one cluster at once (helpers run theirs in parallel), so each
test of the leg holds a file lock for the cluster from its clearing to its end (the kv contract
suite's random ``qq-test/`` spaces are not touched).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import quick_queue.kv as kv
from quick_queue.keys import pack
from quick_queue.kv.api import Transaction, strinc

ENV = "QUICK_QUEUE_FDB_CLUSTER_FILE"
CLEARED = (pack(("qq",)), pack(("qqw",)), b"app/", b"order/")
MARKER_KEY = pack(("qq.tests", "designated"))
ANCHOR_KEY = pack(("qq.kv", "clock"))  # quick_queue.kv.store_clock's: (read version, time)
MAX_DRIFT = 1.0
SKIP = f"no FoundationDB cluster: set {ENV} to a test cluster's file to run this"


#: What was left out for want of a cluster ("kv contract tests" -> 134) and why: the kv suite's
#: conftest and the root one add to it, and the root one prints it as one line at the end.
LEFT_OUT: dict[str, int] = {}
WHY: list[str] = []


def left_out(what: str, count: int, why: str) -> None:
    LEFT_OUT[what] = LEFT_OUT.get(what, 0) + count
    WHY.append(why)


def left_out_line() -> str | None:
    """The one line saying which FoundationDB tests did not run, and why (None: all ran)."""
    if not LEFT_OUT:
        return None
    parts = [f"{count} {what}" if count else what for what, count in LEFT_OUT.items()]
    return f"FoundationDB: {' and '.join(parts)} not run: {WHY[0]}"


class Refused(Exception):
    """The named cluster holds quick_queue data and was never designated for tests."""


def named_cluster_file() -> str | None:
    """The cluster file ``QUICK_QUEUE_FDB_CLUSTER_FILE`` names (absolute), or None."""
    named = os.environ.get(ENV)
    return os.path.abspath(named) if named else None


_WHY: dict[str, str | None] = {}


def unavailable() -> str | None:
    """Why the leg cannot run (None: it can). Asked once per process: one bounded open."""
    if "why" not in _WHY:
        cluster_file = named_cluster_file()
        why: str | None = None
        if cluster_file is None:
            why = SKIP
        else:
            try:
                kv.open("fdb://" + cluster_file).close()
            except Exception as error:  # noqa: BLE001 - any failure to open: no cluster here
                why = f"{SKIP} ({cluster_file} did not open: {error})"
        _WHY["why"] = why
    return _WHY["why"]


def url() -> str:
    cluster_file = named_cluster_file()
    assert cluster_file is not None
    return "fdb://" + cluster_file


def refusal(cluster_file: str) -> str:
    return (
        f"refusing to clear quick_queue's keys on the FoundationDB cluster {cluster_file}: it "
        "holds quick_queue data and was never designated for tests. If it is a test cluster, "
        f"clear them by hand (fdbcli -C {cluster_file} --exec "
        "'writemode on; clearrange \\x02qq\\x00 \\x02qq\\x01; clearrange \\x02qqw\\x00 "
        "\\x02qqw\\x01; clearrange app/ app0; clearrange order/ order0') and run again; "
        "otherwise point "
        f"{ENV} at a test cluster"
    )


def _designate(tr: Transaction, cluster_file: str) -> None:
    if tr.get(MARKER_KEY) is not None:
        return
    if any(tr.get_range(prefix, strinc(prefix), limit=1) for prefix in CLEARED):
        raise Refused(refusal(cluster_file))
    tr.set(MARKER_KEY, b"quick_queue tests may clear ('qq',) here")


def _clear(tr: Transaction) -> None:
    for prefix in CLEARED:
        tr.clear_range(prefix, strinc(prefix))


def _reanchor(tr: Transaction) -> None:
    tr.set(ANCHOR_KEY, struct.pack(">qd", tr.get_read_version(), time.time()))


@contextmanager
def _locked(cluster_file: str) -> Iterator[None]:
    digest = hashlib.sha1(cluster_file.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"quick_queue-fdb-tests-{digest}.lock")
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def empty_cluster(cluster_file: str | None = None, **open_options: Any) -> Iterator[kv.Database]:
    """The named cluster (or ``cluster_file``), opened with ``open_options`` (``clock=``), with
    no queue in it, held for this test alone and cleared again when it ends; refuses
    (``Refused``) a cluster not designated for tests."""
    cluster_file = cluster_file or named_cluster_file()
    assert cluster_file is not None, f"{ENV} is not set"
    with _locked(cluster_file):
        database = kv.open("fdb://" + cluster_file, **open_options)
        try:
            database.transact(lambda tr: _designate(tr, cluster_file))
            database.transact(_clear)
            if abs(database.store_time() - time.time()) > MAX_DRIFT:
                database.transact(_reanchor)
            try:
                yield database
            finally:
                # and after: a test cluster is left with no queue in it (the demo, for one,
                # wants its queue empty)
                with contextlib.suppress(kv.KVError):
                    database.transact(_clear)
        finally:
            database.close()
