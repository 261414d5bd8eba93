"""The return contract (DESIGN.md §5): every way a handler can end leaves the job in the
documented state with the documented reason, and the worker keeps running."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import quick_queue as qq

QueueFactory = Callable[..., qq.JobQueue]


def _info(queue: qq.JobQueue, tenant: str, job_id: str) -> qq.JobInfo:
    info = queue.get_job(tenant, job_id)
    assert info is not None, f"job {job_id} is gone"
    return info


@qq.job(topic="ok:noop")
class Noop:
    runs: list[str] = []

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        Noop.runs.append(meta.job_id)


class Email(pydantic.BaseModel):
    to: str
    count: int


@qq.job(topic="email:send")
class SendEmail:
    Payload = Email
    seen: list[Email] = []

    def perform(self, payload: Email, meta: qq.JobMeta) -> None:
        SendEmail.seen.append(payload)


# -- completion -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "result", [None, 42, "text", {"a": 1}, [1, 2], qq.Ok(), qq.Ok({"x": 1}), Email(to="a", count=1)]
)
def test_none_values_and_ok_complete_the_job(make_queue: QueueFactory, result: object) -> None:
    @qq.job(topic="returns")
    class Returns:
        def perform(self, payload: Any, meta: qq.JobMeta) -> object:
            return result

    queue = make_queue(Returns)
    job_id = queue.enqueue("t", "returns", {})
    summary = queue.drain()
    assert (summary.completed, summary.failed, summary.dead) == (1, 0, 0)
    assert queue.get_job("t", job_id) is None
    assert queue.stats().topics["returns"]["completed"] == 1


def test_payload_is_validated_into_the_model_at_run(make_queue: QueueFactory) -> None:
    SendEmail.seen.clear()
    queue = make_queue(SendEmail)
    queue.enqueue("t", "email:send", {"to": "a@b.c", "count": "3"})  # coerced by the model
    queue.drain()
    assert SendEmail.seen == [Email(to="a@b.c", count=3)]


# -- bad payloads -----------------------------------------------------------------------------
def test_bad_payload_at_enqueue_is_a_payload_error_naming_topic_and_field(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(SendEmail)
    with pytest.raises(qq.PayloadError) as info:
        queue.enqueue("t", "email:send", {"to": "a@b.c", "count": "many"})
    assert isinstance(info.value, ValueError)
    assert "email:send" in str(info.value) and "count" in str(info.value)
    with pytest.raises(qq.PayloadError, match="to"):
        queue.enqueue("t", "email:send", {"count": 1})
    stats = queue.stats()
    assert stats.ready == stats.scheduled == 0  # nothing was written


def test_payload_failing_validation_at_run_is_dead_bad_payload(
    make_queue: QueueFactory,
) -> None:
    SendEmail.seen.clear()
    producer = make_queue()  # knows no handlers: stores the payload unchecked
    bad = producer.enqueue("t", "email:send", {"to": "a@b.c", "count": "many"})
    good = producer.enqueue("t", "ok:noop", {})
    consumer = make_queue(SendEmail, Noop)
    summary = consumer.drain()
    assert summary.dead == 1 and summary.completed == 1  # the worker kept running
    info = _info(consumer, "t", bad)
    assert info.state == "dead" and info.dead_kind == "bad_payload"
    assert info.reason is not None and "email:send" in info.reason and "count" in info.reason
    assert SendEmail.seen == []  # the handler never ran
    assert consumer.get_job("t", good) is None


@qq.job(topic="email:async")
class SendEmailAsync:
    Payload = Email
    seen: list[Email] = []

    async def perform(self, payload: Email, meta: qq.JobMeta) -> None:
        SendEmailAsync.seen.append(payload)


@qq.job(topic="email:tx", transactional=True)
class SendEmailInTransaction:
    Payload = Email
    seen: list[Email] = []

    def perform(self, payload: Email, meta: qq.JobMeta) -> None:
        SendEmailInTransaction.seen.append(payload)


@pytest.mark.parametrize(("handler", "topic"), [
    (SendEmailAsync, "email:async"), (SendEmailInTransaction, "email:tx"),
], ids=["async", "transactional"])
def test_async_and_transactional_handlers_dead_letter_a_bad_payload_too(
    make_queue: QueueFactory, handler: Any, topic: str,
) -> None:
    handler.seen.clear()
    producer = make_queue()  # knows no handlers: stores the payload unchecked
    bad = producer.enqueue("t", topic, {"to": "a@b.c", "count": "many"})
    consumer = make_queue(handler)
    assert consumer.drain().dead == 1
    info = _info(consumer, "t", bad)
    assert info.state == "dead" and info.dead_kind == "bad_payload"
    assert info.reason is not None and "count" in info.reason
    assert handler.seen == []  # the handler never ran


def test_unknown_topic_is_dead_and_the_worker_keeps_running(make_queue: QueueFactory) -> None:
    queue = make_queue(Noop)
    with pytest.warns(qq.UnknownTopicWarning):  # a misspelt topic is warned of, not refused
        lost = queue.enqueue("t", "nobody:home", {"x": 1})
    fine = queue.enqueue("t", "ok:noop", {})
    summary = queue.drain()
    assert summary.dead == 1 and summary.completed == 1
    info = _info(queue, "t", lost)
    assert info.state == "dead" and info.dead_kind == "unknown_topic"
    assert info.reason is not None and "nobody:home" in info.reason
    assert info.payload == {"x": 1}  # kept for a retry by a worker that knows the topic
    assert queue.get_job("t", fine) is None
    assert [d.job_id for d in queue.dead_letters()] == [lost]


# -- failures, retries, backoff ---------------------------------------------------------------
def _run_until_dead(
    queue: qq.JobQueue, clock: qq.ManualClock, tenant: str, job_id: str, limit: int = 10
) -> list[float]:
    """Drain, then move the clock to each retry's due time; the backoff delays seen."""
    delays: list[float] = []
    for _ in range(limit):
        queue.drain()
        info = _info(queue, tenant, job_id)
        if info.state == "dead":
            return delays
        assert info.state == "scheduled" and info.due_at is not None
        delay = info.due_at.timestamp() - clock.now()
        delays.append(delay)
        assert queue.drain().completed + queue.drain().failed == 0  # never early
        clock.advance(delay)
    raise AssertionError("the job never died")


def test_raising_handler_is_retried_with_backoff_then_dead(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    attempts: list[int] = []

    @qq.job(topic="boom", max_retries=3)
    class Boom:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            attempts.append(meta.attempt)
            assert meta.max_retries == 3
            raise ValueError(f"boom #{meta.attempt}")

    queue = make_queue(Boom)
    job_id = queue.enqueue("t", "boom", {})
    delays = _run_until_dead(queue, clock, "t", job_id)
    assert attempts == [1, 2, 3, 4]  # max_retries=3: four runs
    # base 1 s, factor 2, +/-20 % jitter
    for delay, nominal in zip(delays, [1, 2, 4], strict=True):
        assert nominal * 0.8 - 1e-3 <= delay <= nominal * 1.2 + 1e-3
    info = _info(queue, "t", job_id)
    assert info.dead_kind == "failed" and info.attempt == 4
    assert info.reason is not None and "ValueError: boom #4" in info.reason
    assert "failed 4 times" in info.reason
    counters = queue.stats().topics["boom"]
    assert counters["failed"] == 4 and counters["retried"] == 3 and counters["dead"] == 1


def test_last_error_is_kept_between_attempts(make_queue: QueueFactory) -> None:
    @qq.job(topic="flaky")
    class Flaky:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            raise KeyError("missing thing")

    queue = make_queue(Flaky)
    job_id = queue.enqueue("t", "flaky", {})
    summary = queue.drain()
    assert (summary.failed, summary.retried, summary.dead) == (1, 1, 0)
    info = _info(queue, "t", job_id)
    assert info.state == "scheduled" and info.attempt == 1
    assert info.last_error is not None and "KeyError" in info.last_error
    assert "missing thing" in info.last_error


def test_returning_error_is_a_failed_attempt(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    attempts: list[int] = []

    @qq.job(topic="refuse")
    class Refuse:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Error:
            attempts.append(meta.attempt)
            return qq.Error("upstream said no")

    queue = make_queue(Refuse)
    job_id = queue.enqueue("t", "refuse", {}, max_retries=1)
    _run_until_dead(queue, clock, "t", job_id)
    assert attempts == [1, 2]
    info = _info(queue, "t", job_id)
    assert info.dead_kind == "failed" and "upstream said no" in (info.reason or "")


def test_max_retries_zero_runs_once(make_queue: QueueFactory) -> None:
    runs: list[int] = []

    @qq.job(topic="once", max_retries=0)
    class Once:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append(meta.attempt)
            assert meta.is_last_attempt
            raise RuntimeError("no")

    queue = make_queue(Once)
    job_id = queue.enqueue("t", "once", {})
    summary = queue.drain()
    assert runs == [1] and summary.dead == 1
    assert _info(queue, "t", job_id).dead_kind == "failed"


def test_returning_a_weird_object_is_an_error_naming_the_handler(
    make_queue: QueueFactory,
) -> None:
    @qq.job(topic="weird", max_retries=0)
    class Weird:
        def perform(self, payload: Any, meta: qq.JobMeta) -> object:
            return object()

    queue = make_queue(Weird)
    job_id = queue.enqueue("t", "weird", {})
    summary = queue.drain()
    assert summary.completed == 0 and summary.dead == 1
    info = _info(queue, "t", job_id)
    assert info.dead_kind == "failed"
    assert info.reason is not None and "Weird" in info.reason and "object" in info.reason


def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    "make_result",
    [
        _generator,  # a generator
        lambda: qq.Error(123),  # type: ignore[arg-type]  # a reason that is not a string
        lambda: _BadRepr(),  # repr() raises
        lambda: _BadException(),  # an exception returned, whose str() raises
    ],
    ids=["generator", "error-non-str", "bad-repr", "bad-exception-value"],
)
def test_worker_survives_odd_return_values(
    make_queue: QueueFactory, make_result: Callable[[], object]
) -> None:
    @qq.job(topic="odd", max_retries=0)
    class Odd:
        def perform(self, payload: Any, meta: qq.JobMeta) -> object:
            return make_result()

    queue = make_queue(Odd, Noop)
    job_id = queue.enqueue("t", "odd", {})
    after = queue.enqueue("t", "ok:noop", {})
    summary = queue.drain(concurrency=1, timeout=10)
    assert not summary.timed_out
    assert summary.dead == 1 and summary.completed == 1
    assert _info(queue, "t", job_id).dead_kind == "failed"
    assert queue.get_job("t", after) is None


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


class _BadException(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str is broken")


@pytest.mark.parametrize(
    "error",
    [SystemExit(3), KeyboardInterrupt(), _BadException(), GeneratorExit()],
    ids=["SystemExit", "KeyboardInterrupt", "bad-str", "GeneratorExit"],
)
def test_worker_survives_whatever_a_handler_raises(
    make_queue: QueueFactory, error: BaseException
) -> None:
    @qq.job(topic="raiser", max_retries=0)
    class Raiser:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            raise error

    queue = make_queue(Raiser, Noop)
    job_id = queue.enqueue("t", "raiser", {})
    after = queue.enqueue("t", "ok:noop", {})
    summary = queue.drain(concurrency=1, timeout=10)
    assert not summary.timed_out
    assert summary.dead == 1 and summary.completed == 1
    info = _info(queue, "t", job_id)
    assert info.dead_kind == "failed" and type(error).__name__ in (info.reason or "")
    assert queue.get_job("t", after) is None


def test_handler_that_cannot_be_instantiated_is_a_failed_attempt(
    make_queue: QueueFactory,
) -> None:
    @qq.job(topic="needs-args", max_retries=0)
    class NeedsArgs:
        def __init__(self, config: str) -> None:
            self.config = config

        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            pass

    queue = make_queue(NeedsArgs)
    job_id = queue.enqueue("t", "needs-args", {})
    assert queue.drain().dead == 1
    assert "TypeError" in (_info(queue, "t", job_id).reason or "")


# -- timeouts ---------------------------------------------------------------------------------
def test_hanging_handler_times_out_as_a_failed_attempt_and_its_late_result_is_ignored(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    started = threading.Event()
    release = threading.Event()
    saw_lost: list[bool] = []
    attempts: list[int] = []

    @qq.job(topic="hang", timeout=5, priority=0, max_retries=2)
    class Hang:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            attempts.append(meta.attempt)
            if meta.attempt == 1:
                started.set()
                release.wait(10)  # ignores lease_lost: a truly stuck handler
                saw_lost.append(meta.lease_lost.is_set())

    queue = make_queue(Hang, Noop)
    job_id = queue.enqueue("t", "hang", {})
    other = queue.enqueue("t", "ok:noop", {}, priority=10)
    drain = background(queue.drain, concurrency=1)
    assert started.wait(5)
    clock.advance(4.9)  # not yet
    assert _info(queue, "t", job_id).state == "leased"
    clock.advance(0.2)  # past the 5 s timeout: the keeper (every ~50 ms) notices
    info = wait_until(
        lambda: (i := _info(queue, "t", job_id)).state == "scheduled" and i,
        what="the timeout to be settled",
    )
    assert info.attempt == 1
    assert info.last_error is not None and "timed out after 5 s" in info.last_error
    # The stuck handler keeps its slot (concurrency counts running handlers, issue 8 item 4):
    # the other job waits for it instead of running beside it (concurrency=1).
    assert queue.get_job("t", other) is not None
    release.set()
    wait_until(lambda: queue.get_job("t", other) is None, what="the other job")
    summary = drain.result()
    assert saw_lost == [True]
    assert summary.completed == 1 and summary.failed == 1 and summary.retried == 1
    after = _info(queue, "t", job_id)  # the late return changed nothing
    assert (after.state, after.attempt, after.due_at) == ("scheduled", 1, info.due_at)
    assert after.due_at is not None
    clock.set(after.due_at.timestamp())
    assert queue.drain().completed == 1
    assert attempts == [1, 2]
    assert queue.get_job("t", job_id) is None


# -- snooze, discard, dead letters ------------------------------------------------------------
def test_snooze_spends_no_attempt_and_is_capped(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    seen: list[tuple[int, int]] = []

    @qq.job(topic="later", max_retries=0)
    class Later:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Snooze:
            seen.append((meta.attempt, meta.snoozes))
            return qq.Snooze(30)

    queue = make_queue(Later, max_snoozes=2)
    job_id = queue.enqueue("t", "later", {})
    for n in (1, 2):
        summary = queue.drain()
        assert summary.snoozed == 1 and summary.failed == 0
        info = _info(queue, "t", job_id)
        assert (info.state, info.attempt, info.snoozes) == ("scheduled", 0, n)
        assert info.due_at is not None and info.due_at.timestamp() == pytest.approx(
            clock.now() + 30
        )
        clock.advance(29)
        assert queue.drain().snoozed == 0  # not before its time
        clock.advance(1)
    queue.drain()
    assert seen == [(1, 0), (1, 1), (1, 2)]  # every run is attempt 1: snoozes spend no retry
    info = _info(queue, "t", job_id)
    assert info.state == "dead" and info.dead_kind == "snoozed_out"
    assert "2" in (info.reason or "")


def test_discard_dead_letters_with_the_reason_and_retry_dead_revives(
    make_queue: QueueFactory,
) -> None:
    calls: list[int] = []

    @qq.job(topic="maybe")
    class Maybe:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard | None:
            calls.append(meta.attempt)
            return qq.Discard("customer deleted") if len(calls) == 1 else None

    queue = make_queue(Maybe)
    job_id = queue.enqueue("t", "maybe", {"n": 1}, max_retries=5)
    summary = queue.drain()
    assert summary.discarded == 1 and summary.dead == 1 and summary.failed == 0
    info = _info(queue, "t", job_id)
    assert (info.state, info.dead_kind, info.reason) == ("dead", "discarded", "customer deleted")
    assert [d.job_id for d in queue.dead_letters("t")] == [job_id]

    assert queue.retry_dead("t", job_id)
    assert not queue.retry_dead("t", job_id)  # no longer dead
    revived = _info(queue, "t", job_id)
    assert (revived.state, revived.attempt, revived.payload) == ("ready", 0, {"n": 1})
    assert queue.dead_letters() == []
    assert queue.drain().completed == 1
    assert calls == [1, 1]
    assert queue.get_job("t", job_id) is None


# -- transactional jobs -----------------------------------------------------------------------
APP_KEY = b"app/written"


def _read(db: qq.Database, key: bytes) -> bytes | None:
    return db.transact(lambda tr: tr.get(key))


def test_transactional_job_writes_commit_with_its_completion(
    make_queue: QueueFactory, db: qq.Database
) -> None:
    @qq.job(topic="tx:write", transactional=True)
    class Write:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            meta.tr.set(APP_KEY, payload["value"].encode())

    queue = make_queue(Write)
    job_id = queue.enqueue("t", "tx:write", {"value": "hello"})
    assert queue.drain().completed == 1
    assert _read(db, APP_KEY) == b"hello"
    assert queue.get_job("t", job_id) is None


def test_transactional_job_that_fails_leaves_no_writes(
    make_queue: QueueFactory, db: qq.Database
) -> None:
    @qq.job(topic="tx:fail", transactional=True)
    class Fail:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            meta.tr.set(APP_KEY, b"partial")
            raise RuntimeError("changed my mind")

    queue = make_queue(Fail)
    job_id = queue.enqueue("t", "tx:fail", {})
    assert queue.drain().failed == 1
    assert _read(db, APP_KEY) is None
    info = _info(queue, "t", job_id)
    assert info.state == "scheduled" and "changed my mind" in (info.last_error or "")


def test_transactional_job_whose_completion_fails_leaves_no_writes(
    make_queue: QueueFactory, db: qq.Database, background: Any
) -> None:
    started = threading.Event()
    release = threading.Event()

    @qq.job(topic="tx:slow", transactional=True)
    class Slow:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            meta.tr.set(APP_KEY, b"should not land")
            started.set()
            release.wait(3)

    queue = make_queue(Slow)
    job_id = queue.enqueue("t", "tx:slow", {})
    drain = background(queue.drain)
    assert started.wait(5)
    assert queue.cancel("t", job_id)  # the completion will find the lease gone
    release.set()
    summary = drain.result()
    assert summary.stale == 1 and summary.completed == 0
    assert _read(db, APP_KEY) is None
    assert queue.get_job("t", job_id) is None
    assert queue.stats().topics["tx:slow"].get("completed", 0) == 0


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), 1e30])
def test_snooze_rejects_times_that_cannot_be_stored(
    make_queue: QueueFactory, seconds: float
) -> None:
    with pytest.raises(ValueError, match="Snooze"):
        qq.Snooze(seconds)

    @qq.job(topic="snooze:bad", max_retries=0)
    class BadSnooze:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Snooze:
            return qq.Snooze(seconds)

    queue = make_queue(BadSnooze, Noop)
    job_id = queue.enqueue("t", "snooze:bad", {})
    after = queue.enqueue("t", "ok:noop", {})
    summary = queue.drain(concurrency=1, timeout=10)
    assert summary.dead == 1 and summary.completed == 1 and not summary.timed_out
    assert "Snooze" in (_info(queue, "t", job_id).reason or "")
    assert queue.get_job("t", after) is None


def test_discard_with_a_non_string_reason_does_not_poison_other_outcomes(
    make_queue: QueueFactory,
) -> None:
    @qq.job(topic="discard:odd")
    class OddDiscard:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard:
            return qq.Discard(object())  # type: ignore[arg-type]

    queue = make_queue(OddDiscard, Noop)
    odd = queue.enqueue("t", "discard:odd", {})
    others = [queue.enqueue("t", "ok:noop", {}) for _ in range(5)]
    summary = queue.drain(concurrency=4, timeout=10)
    assert summary.discarded == 1 and summary.completed == 5 and summary.stale == 0
    info = _info(queue, "t", odd)
    assert info.dead_kind == "discarded" and "object" in (info.reason or "")
    assert all(queue.get_job("t", j) is None for j in others)


@pytest.mark.sqlite_only("shortens the embedded engine's 5 s transaction lifetime; "
                         "tests/kv/test_fdb_live.py shows FoundationDB's own 1007")
def test_transactional_job_outliving_the_transaction_limit_fails_instead_of_rerunning_forever(
    make_queue: QueueFactory, db: qq.Database, monkeypatch: pytest.MonkeyPatch, background: Any
) -> None:
    # The engine's 5 s transaction lifetime, shortened so the test is quick: every run of
    # this handler ends in transaction_too_old (1007), and each retry would run it again.
    from quick_queue.consumer import runner
    from quick_queue.kv import sqlite_transaction

    monkeypatch.setattr(sqlite_transaction, "LIFETIME", 0.2)
    runs: list[int] = []

    @qq.job(topic="tx:long", transactional=True, max_retries=0)
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            assert meta.tr is not None
            runs.append(meta.attempt)
            meta.tr.get(b"app/read")
            time.sleep(0.25)
            meta.tr.set(APP_KEY, b"never")

    queue = make_queue(Long)
    job_id = queue.enqueue("t", "tx:long", {})
    summary = background(queue.drain).result(timeout=20)  # fails rather than hangs
    assert summary.failed == 1 and summary.dead == 1
    assert len(runs) == 1 + runner.TRANSACTIONAL_RETRY_LIMIT
    info = _info(queue, "t", job_id)
    assert info.dead_kind == "failed" and "1007" in (info.reason or "")
    assert _read(db, APP_KEY) is None
