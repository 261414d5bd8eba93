"""Transactional handlers that live long (issue 8, item 1): the worker's own lease extension
never conflicts with the transaction of the job it extends, and a handler that outlives the
transaction limit fails once, with a reason that says so, instead of looping on 1020/1007.

These run on the real embedded engine in real time (the keeper and the engine's transaction
lifetime both run on real clocks); the sleeps are the shortest that show the behaviour."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer import transactional
from quick_queue.consumer.keeper import Keeper
from quick_queue.keys import pack
from quick_queue.kv import sqlite_transaction

ORDER = pack(("shop", "order", "A-1"))


@pytest.fixture
def real_db() -> Iterator[qq.Database]:
    """A store on the host's time: these tests are about real clocks."""
    database = qq.open("memory://")
    try:
        yield database
    finally:
        database.close()


def _brewed(db: qq.Database, job_id: str) -> bytes | None:
    return db.transact(lambda tr: tr.get(pack(("shop", "brewed", job_id))))


def test_reading_handler_that_outlives_an_extension_period_commits_once(
    real_db: qq.Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reproduction: the keeper extends every item_lease/3 = 1 s; the handler's
    # transaction read the job record (through the completion) and stays open until the
    # keeper has run two extension rounds (waited for, not slept).
    runs: list[int] = []
    rounds = threading.Semaphore(0)
    extend_all = Keeper.extend_all

    def counted(self: Keeper) -> None:
        extend_all(self)
        rounds.release()

    monkeypatch.setattr(Keeper, "extend_all", counted)
    queue = qq.JobQueue(real_db, item_lease=3, max_retries=0)

    @queue.job(topic="brew", transactional=True)
    class Brew:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            runs.append(meta.attempt)
            meta.tr.get(ORDER)
            meta.tr[pack(("shop", "brewed", meta.job_id))] = b"1"
            for _ in range(2):
                assert rounds.acquire(timeout=10)

    job_id = queue.enqueue("shop", "brew", {})
    summary = queue.drain(timeout=30)
    assert runs == [1]
    assert summary.completed == 1 and summary.failed == 0 and summary.dead == 0
    assert _brewed(real_db, job_id) == b"1"
    assert queue.get_job("shop", job_id) is None


def test_short_lease_covers_the_whole_transaction_and_nobody_else_takes_the_job(
    real_db: qq.Database, background: Any
) -> None:
    # item_lease=0.3 s: the keeper would extend every 0.1 s (each extension a conflict), and
    # without the lease stretched over the transaction a second consumer could take the job.
    runs: list[str] = []
    started, release = threading.Event(), threading.Event()

    @qq.job(topic="brew", transactional=True, max_retries=0)
    class Brew:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            runs.append(threading.current_thread().name)
            meta.tr.get(ORDER)
            meta.tr[pack(("shop", "brewed", meta.job_id))] = b"1"
            started.set()
            assert release.wait(10)  # open while the second consumer looks for work

    first = qq.JobQueue(real_db, jobs=[Brew], item_lease=0.3)
    second = qq.JobQueue(real_db, jobs=[Brew], item_lease=0.3)
    job_id = first.enqueue("shop", "brew", {})
    drain = background(first.drain, timeout=30)
    assert started.wait(5)
    info = first.get_job("shop", job_id)
    assert info is not None and info.lease_expires_at is not None
    # stretched to cover the transaction's whole possible life, not item_lease
    assert info.lease_expires_at.timestamp() >= time.time() + transactional.TRANSACTION_LIMIT - 1
    assert second.drain(timeout=5).completed == 0
    release.set()
    summary = drain.result(timeout=30)
    assert len(runs) == 1
    assert summary.completed == 1 and summary.stale == 0
    assert _brewed(real_db, job_id) == b"1"


@pytest.fixture
def short_limit(monkeypatch: pytest.MonkeyPatch) -> float:
    """The 5 s transaction limit (the runtime's and the engine's), shortened to 0.3 s."""
    monkeypatch.setattr(transactional, "TRANSACTION_LIMIT", 0.3)
    monkeypatch.setattr(sqlite_transaction, "LIFETIME", 0.3)
    return 0.3


@pytest.mark.parametrize("reads_late", [False, True], ids=["sleeps", "reads-after-limit"])
def test_handler_past_the_transaction_limit_fails_once_with_a_clear_reason(
    real_db: qq.Database, short_limit: float, reads_late: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    @qq.job(topic="brew", transactional=True, max_retries=1)
    class Brew:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            runs.append(meta.attempt)
            meta.tr.get(ORDER)
            meta.tr[pack(("shop", "brewed", meta.job_id))] = b"1"
            time.sleep(short_limit + 0.1)
            if reads_late:  # the engine refuses this read: transaction_too_old (1007)
                meta.tr.get(ORDER)

    queue = qq.JobQueue(real_db, jobs=[Brew], backoff_base=0.01, backoff_cap=0.01)
    job_id = queue.enqueue("shop", "brew", {})
    with caplog.at_level(logging.INFO, logger="quick_queue"):
        first = queue.drain(timeout=30)
        time.sleep(0.05)  # the retry's backoff
        second = queue.drain(timeout=30)
    assert runs == [1, 2]  # one run per attempt: never a retry loop of the transaction
    assert (first.failed, first.retried, second.failed, second.dead) == (1, 1, 1, 1)
    assert first.completed == second.completed == 0
    assert _brewed(real_db, job_id) is None
    info = queue.get_job("shop", job_id)
    assert info is not None and info.dead_kind == "failed"
    for text in (info.reason or "", info.last_error or ""):
        assert "transaction limit" in text and "transactional=False" in text, text
    assert "transaction_too_old" in (info.reason or "")
    assert [d.job_id for d in queue.dead_letters()] == [job_id]
    assert "transaction limit" in caplog.text


def test_a_conflict_on_the_handlers_own_read_reruns_the_transaction_not_the_attempt(
    real_db: qq.Database, background: Any
) -> None:
    # Someone else writes the key the handler read: the commit is refused (1020) and the
    # transaction runs again, within the same attempt; nothing is counted as failed.
    runs: list[int] = []
    read_done, written = threading.Event(), threading.Event()

    @qq.job(topic="brew", transactional=True, max_retries=0)
    class Brew:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            runs.append(meta.attempt)
            order = meta.tr.get(ORDER)
            meta.tr[pack(("shop", "brewed", meta.job_id))] = order or b"none"
            read_done.set()
            written.wait(5)

    queue = qq.JobQueue(real_db, jobs=[Brew])
    job_id = queue.enqueue("shop", "brew", {})
    drain = background(queue.drain, timeout=30)
    assert read_done.wait(5)
    real_db.transact(lambda tr: tr.set(ORDER, b"espresso"))
    written.set()
    summary = drain.result(timeout=30)
    assert runs == [1, 1]
    assert (summary.completed, summary.failed, summary.retried) == (1, 0, 0)
    assert _brewed(real_db, job_id) == b"espresso"
