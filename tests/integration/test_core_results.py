"""Kept results and job history (issue 12): opt-in per handler or queue, written in the
settle transaction, shown by ``get_job``, returned by ``queue.result``, pruned incrementally;
a queue that keeps nothing stores nothing after completion."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pydantic
import pytest

import quick_queue as qq
from quick_queue import results
from quick_queue.keys import Layout

QueueFactory = Callable[..., qq.JobQueue]


class Order(pydantic.BaseModel):
    item: str


@qq.job(topic="till:receipt", keep_result=60)
class Receipt:
    Payload = Order

    def perform(self, payload: Order, meta: qq.JobMeta) -> dict[str, Any]:
        return {"item": payload.item, "total": 3.5}


@qq.job(topic="till:plain")
class Plain:
    def perform(self, payload: Any, meta: qq.JobMeta) -> str:
        return "thrown away"


@qq.job(topic="till:never", keep_result=timedelta(minutes=1))
class Never:
    def perform(self, payload: Any, meta: qq.JobMeta) -> str:
        return "not kept" if payload == "first" else "kept"


@qq.job(topic="till:fails", keep_result=60, max_retries=1)
class Fails:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError(f"out of beans (attempt {meta.attempt})")


@qq.job(topic="till:gives-up", keep_result=60)
class GivesUp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard:
        return qq.Discard("no such coffee")


@qq.job(topic="till:huge", keep_result=60)
class Huge:
    def perform(self, payload: Any, meta: qq.JobMeta) -> Any:
        return "x" * 200_000 if payload == "big" else {"when": {1, 2}}


@qq.job(topic="till:opt-out", keep_result=0)
class OptOut:
    def perform(self, payload: Any, meta: qq.JobMeta) -> str:
        return "never kept"


def _history_keys(queue: qq.JobQueue) -> list[bytes]:
    layout = Layout(queue.name)

    def read(tr: qq.Transaction) -> list[bytes]:
        keys = [k for k, _ in tr.get_range_startswith(layout.history_prefix)]
        return keys + [k for k, _ in tr.get_range_startswith(layout.expiry_prefix)]

    return queue.db.transact(read)


def _drain_all(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    for _ in range(6):  # retries come due after their backoff: move the clock past it
        queue.drain(concurrency=2, timeout=10)
        clock.advance(2)


def test_a_kept_result_is_shown_by_get_job_and_returned_by_result(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Receipt)
    job_id = queue.enqueue("shop", "till:receipt", {"item": "latte"})
    enqueued = clock.now()
    clock.advance(2)
    queue.drain(timeout=10)
    info = queue.get_job("shop", job_id)
    assert info is not None
    assert (info.state, info.attempt, info.topic, info.result) == (
        "completed", 1, "till:receipt", {"item": "latte", "total": 3.5})
    assert info.enqueued_at.timestamp() == pytest.approx(enqueued)
    assert info.finished_at is not None and info.started_at is not None
    assert info.finished_at.timestamp() == pytest.approx(clock.now())
    assert info.kept_until is not None
    assert info.kept_until.timestamp() == pytest.approx(clock.now() + 60)
    assert info.duration is not None and info.duration >= 0
    assert info.to_dict()["result"] == {"item": "latte", "total": 3.5}
    assert queue.result("shop", job_id) == {"item": "latte", "total": 3.5}


def test_nothing_is_kept_unless_asked(make_queue: QueueFactory) -> None:
    queue = make_queue(Plain, OptOut)
    plain = queue.enqueue("shop", "till:plain")
    queue.drain(timeout=10)
    assert queue.get_job("shop", plain) is None
    assert _history_keys(queue) == []
    with pytest.raises(qq.JobNotFound, match="without keep_result"):
        queue.result("shop", plain)
    # a handler's keep_result=0 wins over a queue that keeps results
    keeping = make_queue(OptOut, name="keeping", keep_result=60)
    out = keeping.enqueue("shop", "till:opt-out")
    keeping.drain(timeout=10)
    assert keeping.get_job("shop", out) is None and _history_keys(keeping) == []


def test_the_queue_setting_keeps_results_of_handlers_that_say_nothing(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Plain, keep_result=timedelta(seconds=30))
    job_id = queue.enqueue("shop", "till:plain")
    queue.drain(timeout=10)
    assert queue.result("shop", job_id) == "thrown away"


def test_dead_discarded_and_cancelled_jobs_raise_clear_errors(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Fails, GivesUp, Receipt)
    failing = queue.enqueue("shop", "till:fails")
    discarded = queue.enqueue("shop", "till:gives-up")
    cancelled = queue.enqueue("shop", "till:receipt", {"item": "mocha"}, in_=600)
    assert queue.cancel("shop", cancelled)
    _drain_all(queue, clock)

    with pytest.raises(qq.JobDead, match="out of beans \\(attempt 2\\)") as dead:
        queue.result("shop", failing)
    assert isinstance(dead.value, qq.JobFailed)
    info = queue.get_job("shop", failing)  # the dead letter, with the kept timings
    assert info is not None and info.state == "dead" and info.attempt == 2
    assert info.finished_at is not None

    with pytest.raises(qq.JobDiscarded, match="no such coffee"):
        queue.result("shop", discarded)
    with pytest.raises(qq.JobCancelled):
        queue.result("shop", cancelled)
    gone = queue.get_job("shop", cancelled)
    assert gone is not None and gone.state == "cancelled"

    # once the dead letters are purged, the history still says how they ended
    queue.purge_dead("shop")
    with pytest.raises(qq.JobDead):
        queue.result("shop", failing)
    again = queue.get_job("shop", discarded)
    assert again is not None and again.state == "discarded"
    assert again.last_error == "no such coffee"


def test_a_value_that_cannot_be_kept_never_fails_the_job(make_queue: QueueFactory) -> None:
    queue = make_queue(Huge)
    big = queue.enqueue("shop", "till:huge", "big")
    odd = queue.enqueue("shop", "till:huge", "set")
    summary = queue.drain(timeout=10)
    assert summary.completed == 2
    with pytest.raises(qq.ResultNotKept, match=r"over the .*-byte limit") as caught:
        queue.result("shop", big)
    assert "result not kept" in caught.value.note
    with pytest.raises(qq.ResultNotKept, match="is not JSON"):
        queue.result("shop", odd)
    info = queue.get_job("shop", big)
    assert info is not None and info.state == "completed" and info.result is None


def test_result_times_out_on_a_job_that_has_not_run(make_queue: QueueFactory) -> None:
    queue = make_queue(Receipt)
    job_id = queue.enqueue("shop", "till:receipt", {"item": "tea"})
    with pytest.raises(qq.ResultTimeout, match="has not finished") as caught:
        queue.result("shop", job_id, wait=0.05)
    assert isinstance(caught.value, TimeoutError)
    with pytest.raises(qq.InvalidArgument, match="wait"):
        queue.result("shop", job_id, wait=-1)


def test_waiting_wakes_on_the_completions_commit(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no cap on a wait, only the commit's signal can wake the waiter in time.
    monkeypatch.setattr(results, "WAKE_CAP", 60.0)
    queue = make_queue(Receipt)
    job_id = queue.enqueue("shop", "till:receipt", {"item": "flat white"})
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(
        queue.result("shop", job_id, wait=30)))
    waiter.start()
    time.sleep(0.05)  # let the waiter block first (real time: this is about waking)
    started = time.monotonic()
    queue.drain(timeout=10)
    waiter.join(10)
    assert got == [{"item": "flat white", "total": 3.5}]
    assert time.monotonic() - started < 10


def test_expired_entries_are_hidden_then_pruned_by_later_settles(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Never)
    first = queue.enqueue("shop", "till:never", "first")
    queue.drain(timeout=10)
    assert len(_history_keys(queue)) == 2  # the entry and its expiry index entry
    clock.advance(61)
    assert queue.get_job("shop", first) is None  # expired: hidden before it is pruned
    with pytest.raises(qq.JobNotFound):
        queue.result("shop", first)
    second = queue.enqueue("shop", "till:never", "second")
    queue.drain(timeout=10)  # this settle prunes the expired entry
    assert len(_history_keys(queue)) == 2
    assert queue.result("shop", second) == "kept"


def test_a_reused_key_keeps_the_newer_entry_when_the_older_expires(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Never, Receipt)
    first = queue.enqueue("shop", "till:never", "first", key="daily")
    queue.drain(timeout=10)
    clock.advance(30)
    again = queue.enqueue("shop", "till:never", "again", key="daily")
    assert again == first
    queue.drain(timeout=10)
    clock.advance(31)  # the first entry's expiry passed; the second's has not
    queue.enqueue("shop", "till:receipt", {"item": "x"})
    queue.drain(timeout=10)  # prunes the first expiry entry, not the newer history
    assert queue.result("shop", key="daily") == "kept"


def test_a_transactional_handler_keeps_its_result_in_its_own_transaction(
    make_queue: QueueFactory,
) -> None:
    @qq.job(topic="till:tx", transactional=True, keep_result=60)
    class Tx:
        def perform(self, payload: Any, meta: qq.JobMeta) -> int:
            assert meta.tr is not None
            meta.tr.set(b"side-effect", b"1")
            return 42

    queue = make_queue(Tx)
    job_id = queue.enqueue("shop", "till:tx")
    queue.drain(timeout=10)
    assert queue.result("shop", job_id) == 42
    assert queue.db.transact(lambda tr: tr.get(b"side-effect")) == b"1"


def test_get_job_and_result_by_key(make_queue: QueueFactory) -> None:
    queue = make_queue(Receipt)
    job_id = queue.enqueue("shop", "till:receipt", {"item": "cortado"}, key="order-7")
    info = queue.get_job("shop", key="order-7")
    assert info is not None and info.job_id == job_id and info.state == "ready"
    assert queue.get_job("other", key="order-7") is None  # keys are per tenant
    queue.drain(timeout=10)
    assert queue.result("shop", key="order-7") == {"item": "cortado", "total": 3.5}
    with pytest.raises(qq.InvalidArgument, match="exactly one"):
        queue.get_job("shop", job_id, key="order-7")
    with pytest.raises(qq.InvalidArgument, match="exactly one"):
        queue.get_job("shop")


def test_keep_result_is_checked_at_decoration() -> None:
    with pytest.raises(qq.ConfigurationError, match="keep_result must be seconds"):
        qq.job(topic="t", keep_result=-1)
    with pytest.raises(qq.ConfigurationError, match="keep_result must be seconds"):
        qq.job(topic="t", keep_result="1h")  # type: ignore[arg-type]
    with pytest.raises(qq.ConfigurationError, match="keep_result must be >= 0"):
        qq.Settings.build(keep_result=-5)


def test_result_async_waits_without_blocking_the_loop(make_queue: QueueFactory) -> None:
    queue = make_queue(Receipt)
    job_id = queue.enqueue("shop", "till:receipt", {"item": "espresso"})

    async def till() -> tuple[Any, int]:
        waiting = asyncio.create_task(queue.result_async("shop", job_id, wait=30))
        ticks = 0
        while ticks < 5:  # the loop runs while result_async waits
            await asyncio.sleep(0.001)
            ticks += 1
        assert not waiting.done()
        await asyncio.to_thread(queue.drain, 2, 10)
        return await waiting, ticks

    value, ticks = asyncio.run(till())
    assert value == {"item": "espresso", "total": 3.5} and ticks == 5
