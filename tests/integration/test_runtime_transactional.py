"""Transactional enqueue: a job written in the caller's transaction commits with the caller's
own writes or not at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.kv.faults import FaultyDatabase

QueueFactory = Callable[..., qq.JobQueue]
ORDER_KEY = b"app/orders/1"


class Abort(Exception):
    pass


@qq.job(topic="email:send")
class SendEmail:
    sent: list[Any] = []

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        SendEmail.sent.append(payload)


@pytest.fixture(autouse=True)
def _clear() -> None:
    SendEmail.sent.clear()


def _read(db: qq.Database, key: bytes) -> bytes | None:
    return db.transact(lambda tr: tr.get(key))


def _nothing_queued(queue: qq.JobQueue) -> None:
    stats = queue.stats()
    assert (stats.ready, stats.scheduled, stats.leased, stats.dead) == (0, 0, 0, 0)
    assert queue.drain().completed == 0
    assert SendEmail.sent == []


def test_enqueue_in_an_aborted_transact_leaves_no_job(
    db: qq.Database, make_queue: QueueFactory
) -> None:
    queue = make_queue(SendEmail)
    ids: list[str] = []

    def place_order(tr: qq.Transaction) -> None:
        tr.set(ORDER_KEY, b"order")
        ids.append(queue.enqueue("shop", "email:send", {"to": "a"}, tr=tr))
        raise Abort("payment declined")

    with pytest.raises(Abort):
        db.transact(place_order)
    assert len(ids) == 1
    assert queue.get_job("shop", ids[0]) is None
    assert _read(db, ORDER_KEY) is None
    _nothing_queued(queue)


def test_enqueue_in_an_aborted_transactional_function_leaves_no_job(
    db: qq.Database, make_queue: QueueFactory
) -> None:
    queue = make_queue(SendEmail)

    @qq.transactional
    def place_order(tr: qq.Transaction, shop: str, fail: bool) -> str:
        tr.set(ORDER_KEY, b"order")
        job_id = queue.enqueue(shop, "email:send", {"to": "a"}, tr=tr, in_=5)
        if fail:
            raise Abort("out of stock")
        return job_id

    with pytest.raises(Abort):
        place_order(db, "shop", True)
    _nothing_queued(queue)
    assert _read(db, ORDER_KEY) is None


def test_enqueue_many_in_an_aborted_transaction_leaves_no_job(
    db: qq.Database, make_queue: QueueFactory
) -> None:
    queue = make_queue(SendEmail)

    def batch(tr: qq.Transaction) -> None:
        queue.enqueue_many([("a", "email:send", {}), ("b", "email:send", {})], tr=tr)
        raise Abort()

    with pytest.raises(Abort):
        db.transact(batch)
    _nothing_queued(queue)


def test_committed_enqueue_runs_and_commits_with_the_apps_writes(
    db: qq.Database, make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(SendEmail)

    @qq.transactional
    def place_order(tr: qq.Transaction, shop: str) -> str:
        tr.set(ORDER_KEY, b"order")
        return queue.enqueue(shop, "email:send", {"to": "a"}, tr=tr, in_=5)

    job_id = place_order(db, "shop")
    assert _read(db, ORDER_KEY) == b"order"
    info = queue.get_job("shop", job_id)
    assert info is not None and info.state == "scheduled"
    clock.advance(5)
    assert queue.drain().completed == 1
    assert SendEmail.sent == [{"to": "a"}]


def test_enqueue_joins_an_open_transaction_and_is_invisible_until_commit(
    db: qq.Database, make_queue: QueueFactory
) -> None:
    queue = make_queue(SendEmail)
    tr = db.create_transaction()
    tr.set(ORDER_KEY, b"order")
    job_id = queue.enqueue("shop", "email:send", {"to": "a"}, tr=tr)
    # not committed yet: no consumer sees it, and the app's write is not there either
    assert queue.get_job("shop", job_id) is None
    assert queue.drain().completed == 0
    assert _read(db, ORDER_KEY) is None
    tr.commit()
    assert _read(db, ORDER_KEY) == b"order"
    assert queue.drain().completed == 1


def test_a_transaction_retried_on_conflicts_leaves_exactly_one_job(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    faulty = FaultyDatabase(db, seed=3, not_committed=0.6, too_old=0.2)
    queue = qq.JobQueue(faulty, jobs=[SendEmail], clock=clock)
    attempts: list[str] = []

    @qq.transactional
    def place_order(tr: qq.Transaction, n: int) -> str:
        tr.set(ORDER_KEY + str(n).encode(), b"order")
        job_id = queue.enqueue("shop", "email:send", {"n": n}, tr=tr)
        attempts.append(job_id)
        return job_id

    committed = [place_order(faulty, n) for n in range(10)]
    assert len(attempts) > len(committed)  # faults really forced retries
    assert faulty.injected["not_committed"] > 0
    with faulty.paused():
        # only the committed attempt's job exists; the ids of the failed attempts do not
        for job_id in set(attempts) - set(committed):
            assert queue.get_job("shop", job_id) is None
        assert queue.drain().completed == 10
    assert sorted(p["n"] for p in SendEmail.sent) == list(range(10))


def test_enqueue_rejects_something_that_is_not_a_transaction(
    make_queue: QueueFactory, db: qq.Database
) -> None:
    queue = make_queue(SendEmail)
    with pytest.raises(TypeError, match="transaction"):
        queue.enqueue("shop", "email:send", {}, tr=db)
    with pytest.raises(TypeError, match="transaction"):
        queue.enqueue("shop", "email:send", {}, tr="tr")
