"""Several processes on one SQLite file: serializable counters, versionstamps in commit order,
and a process killed with SIGKILL in the middle of committing.

The workers are started with multiprocessing's ``spawn`` so each is a clean interpreter with its
own SQLite connections, as separate programs sharing a queue file would be.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
from contextlib import closing
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from quick_queue.kv.api import Transaction
from quick_queue.kv.sqlite_engine import SQLiteDatabase

pytestmark = pytest.mark.slow

CTX = multiprocessing.get_context("spawn")
LOG = b"log/"
STAMPED_LOG_KEY = LOG + b"\x00" * 10 + struct.pack("<I", len(LOG))


def _bump(tr: Transaction) -> tuple[int, Any]:
    """Read-modify-write of one counter, logged under a versionstamped key."""
    value = int(tr.get(b"counter") or b"0") + 1
    tr.set(b"counter", b"%d" % value)
    tr.set_versionstamped_key(STAMPED_LOG_KEY, b"%d" % value)
    return value, tr.get_versionstamp()


def _counting_worker(path: str, n: int, start: Any, results: Any) -> None:
    db = SQLiteDatabase(path)
    out: list[tuple[int, bytes]] = []
    try:
        start.wait(timeout=60)  # everyone contends from the same moment
        for _ in range(n):
            value, future = db.transact(_bump)
            out.append((value, future.wait()))
    finally:
        db.close()
        results.put((os.getpid(), out))


def _acknowledging_worker(path: str, acks: Connection) -> None:
    """Commit forever, sending each committed counter value after its commit returned."""
    db = SQLiteDatabase(path)  # synchronous=FULL, the default
    while True:
        value, _ = db.transact(_bump)
        acks.send(value)


def _run_counting(path: str, processes: int, n: int) -> list[tuple[int, bytes]]:
    start = CTX.Barrier(processes)
    results = CTX.Queue()
    workers = [
        CTX.Process(target=_counting_worker, args=(path, n, start, results))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    collected: list[tuple[int, bytes]] = []
    for _ in workers:
        _pid, out = results.get(timeout=120)
        collected.extend(out)
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    return collected


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[tuple[int, bytes]]]:
    """4 processes x 50 increments of one counter through the retry loop, on one file."""
    path = str(tmp_path_factory.mktemp("procs") / "kv.db")
    SQLiteDatabase(path).close()  # create the schema once, before the race
    return path, _run_counting(path, processes=4, n=50)


def _read_all(path: str) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    with closing(SQLiteDatabase(path)) as db:
        return db.transact(lambda tr: (tr.get(b"counter"), tr.get_range(LOG, b"log0")))


def test_processes_incrementing_one_counter_end_with_the_exact_total(
    counted: tuple[str, list[tuple[int, bytes]]],
) -> None:
    path, results = counted
    counter, log = _read_all(path)
    assert counter == b"200"
    # every increment saw a distinct predecessor: no lost update, no double count
    assert sorted(value for value, _ in results) == list(range(1, 201))
    assert len(log) == 200


def test_versionstamps_are_unique_and_increasing_across_processes(
    counted: tuple[str, list[tuple[int, bytes]]],
) -> None:
    path, results = counted
    stamps = [stamp for _, stamp in sorted(results)]
    assert all(len(s) == 10 for s in stamps)
    assert stamps == sorted(set(stamps))  # strictly increasing in commit (counter) order
    _, log = _read_all(path)
    # the log keys, in key order, are the stamps and list the values in commit order
    assert [k[len(LOG) :] for k, _ in log] == stamps
    assert [int(v) for _, v in log] == list(range(1, 201))


def test_sigkill_mid_commit_leaves_exactly_the_acknowledged_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    expected = 0  # what the file holds before each round
    for target in (7, 31, 18):  # three workers in turn on one file, each killed mid-run
        receive, send = CTX.Pipe(duplex=False)
        child = CTX.Process(target=_acknowledging_worker, args=(path, send))
        child.start()
        send.close()
        acked: list[int] = []
        while len(acked) < target:
            assert receive.poll(60), "the worker stopped acknowledging"
            acked.append(receive.recv())
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
        # each ack is one small write to the pipe, so it arrived whole or not at all
        while receive.poll(0):
            try:
                acked.append(receive.recv())
            except EOFError:
                break
        receive.close()
        assert acked == list(range(expected + 1, expected + len(acked) + 1))
        last = acked[-1]
        with closing(SQLiteDatabase(path)) as db:
            assert db.integrity_check() == "ok"
            counter, log = db.transact(lambda tr: (tr.get(b"counter"), tr.get_range(LOG, b"log0")))
        value = int(counter or b"0")
        # The worker acknowledges a commit only after it returned and commits the next one only
        # after acknowledging. So every acknowledged commit is there, and at most one more: the
        # kill may land after a commit became durable but before its acknowledgement was sent.
        assert value in (last, last + 1)
        assert [int(v) for _, v in log] == list(range(1, value + 1))
        expected = value
