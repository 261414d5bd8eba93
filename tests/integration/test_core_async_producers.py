"""Awaitable producers (issue 12): ``enqueue_async``/``enqueue_many_async`` commit off the event
loop, and ``transact_async`` runs a transaction that enqueues with ``tr=`` beside its own
writes, all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq


@pytest.fixture
def file_queue(tmp_path: Path) -> Iterator[tuple[qq.JobQueue, Path]]:
    path = tmp_path / "q.db"
    db = qq.open(f"sqlite:///{path}")
    try:
        yield qq.JobQueue(db), path
    finally:
        db.close()


def test_the_loop_keeps_running_while_a_commit_waits(
    file_queue: tuple[qq.JobQueue, Path],
) -> None:
    queue, path = file_queue
    queue.enqueue("shop", "brew", 1)  # the file and its tables exist
    # Another connection holds the write lock: the enqueue's commit must wait for it.
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")
    # A safety net: a blocking enqueue would stall the loop until this releases the lock.
    safety = threading.Timer(3.0, lambda: blocker.execute("COMMIT"))
    safety.start()

    async def main() -> tuple[int, bool, str]:
        task = asyncio.create_task(queue.enqueue_async("shop", "brew", 2))
        ticks, started = 0, time.monotonic()
        while time.monotonic() - started < 0.3:
            await asyncio.sleep(0.005)
            ticks += 1
        pending = not task.done()
        safety.cancel()
        blocker.execute("COMMIT")
        return ticks, pending, await task

    try:
        ticks, pending, job_id = asyncio.run(main())
    finally:
        safety.cancel()
        blocker.close()
    assert pending, "the enqueue finished while another connection held the write lock"
    assert ticks >= 20, f"the event loop ran only {ticks} times in 0.3 s: it was blocked"
    info = queue.get_job("shop", job_id)
    assert info is not None and info.payload == 2


def test_many_concurrent_async_enqueues_all_land(
    file_queue: tuple[qq.JobQueue, Path],
) -> None:
    queue, _ = file_queue

    async def main() -> list[str]:
        singles = [queue.enqueue_async("shop", "brew", {"n": i}) for i in range(20)]
        batch = queue.enqueue_many_async([("shop", "brew", {"n": 100 + i}) for i in range(5)])
        done = await asyncio.gather(*singles, batch)
        ids: list[str] = [i for i in done[:-1] if isinstance(i, str)]
        last = done[-1]
        assert isinstance(last, list)
        return ids + last

    ids = asyncio.run(main())
    assert len(set(ids)) == 25
    assert queue.stats().ready == 25


def test_transact_async_commits_the_job_with_the_callers_writes(
    file_queue: tuple[qq.JobQueue, Path],
) -> None:
    queue, _ = file_queue

    def place(tr: qq.Transaction, order: str) -> str:
        tr.set(b"order/" + order.encode(), b"placed")
        return queue.enqueue("shop", "receipt", {"order": order}, tr=tr)

    def place_then_fail(tr: qq.Transaction, order: str) -> str:
        place(tr, order)
        raise RuntimeError("card declined")

    async def main() -> str:
        job_id = await queue.transact_async(place, "o-1")
        with pytest.raises(RuntimeError, match="card declined"):
            await queue.transact_async(place_then_fail, "o-2")
        return job_id

    job_id = asyncio.run(main())
    assert queue.get_job("shop", job_id) is not None
    assert queue.db.transact(lambda tr: tr.get(b"order/o-1")) == b"placed"
    assert queue.db.transact(lambda tr: tr.get(b"order/o-2")) is None
    assert queue.stats().ready == 1  # the failed transaction left no job behind


def test_enqueue_async_with_tr_writes_into_the_callers_transaction(
    file_queue: tuple[qq.JobQueue, Path],
) -> None:
    queue, _ = file_queue

    async def main() -> str:
        tr = queue.db.create_transaction()
        job_id = await queue.enqueue_async("shop", "brew", {"cup": 1}, tr=tr)
        ids = await queue.enqueue_many_async([("shop", "brew", {"cup": 2})], tr=tr)
        assert queue.get_job("shop", job_id) is None  # not committed yet
        await asyncio.to_thread(tr.commit)
        return ids[0]

    second = asyncio.run(main())
    assert queue.get_job("shop", second) is not None
    assert queue.stats().ready == 2


def test_transact_async_refuses_a_coroutine_function(
    file_queue: tuple[qq.JobQueue, Path],
) -> None:
    queue, _ = file_queue

    async def write(tr: qq.Transaction) -> Any:
        return None

    with pytest.raises(qq.ArgumentTypeError, match="not a coroutine function"):
        _ = asyncio.run(queue.transact_async(write))
