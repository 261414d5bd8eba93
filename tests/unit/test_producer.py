"""Producer checks (quick_queue/producer.py) through ``JobQueue.enqueue`` on the real engine:
every mistake a ``QuickQueueError`` naming the remedy, the size limit as a ``PayloadError``,
a misspelt topic warned about."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.models import VALUE_LIMIT


@qq.job(topic="mail")
class Mail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


@pytest.fixture
def queue(db: qq.Database, clock: qq.ManualClock) -> Iterator[qq.JobQueue]:
    yield qq.JobQueue(db, jobs=[Mail], clock=clock)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"in_": math.inf}, "in_ must be a delay in seconds"),
        ({"in_": -1}, "in_ must be a delay"),
        ({"in_": math.nan}, "in_ must be a delay"),
        ({"in_": 1e300}, "a century"),
        ({"in_": timedelta(days=365 * 200)}, "a century"),
        ({"in_": True}, "in_ must be a delay"),
        ({"in_": 1, "at": datetime.now(UTC)}, "not both"),
        ({"at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"at": datetime(9999, 1, 1, tzinfo=UTC)}, "within a century"),
        ({"priority": 1001}, "priority must be an integer in 0..1000"),
        ({"priority": 1.5}, "priority must be an integer"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"key": ""}, "key must be a non-empty string"),
        ({"key": "k" * 1001}, "key is 1001 characters long"),
    ],
)
def test_bad_enqueue_arguments_are_invalid_arguments(
    queue: qq.JobQueue, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(qq.InvalidArgument) as caught:
        queue.enqueue("acme", "mail", {}, **kwargs)
    assert isinstance(caught.value, ValueError) and words in str(caught.value)
    assert queue.stats().zones == 0


@pytest.mark.parametrize(("tenant", "topic"), [("", "mail"), (7, "mail"), ("a", ""),
                                               ("a" * 1001, "mail"), ("a", "t" * 1001)])
def test_bad_tenants_and_topics(queue: qq.JobQueue, tenant: Any, topic: Any) -> None:
    with pytest.raises(qq.InvalidArgument, match=r"tenant|topic"):
        queue.enqueue(tenant, topic, {})


def test_enqueue_many_bad_items_are_invalid_arguments(queue: qq.JobQueue) -> None:
    with pytest.raises(qq.InvalidArgument, match=r"unknown enqueue field.*colour"):
        queue.enqueue_many([{"tenant": "a", "topic": "mail", "colour": "red"}])
    with pytest.raises(qq.InvalidArgument, match="enqueue_many takes"):
        queue.enqueue_many(["acme"])  # type: ignore[list-item]
    with pytest.raises(qq.ArgumentTypeError, match="tr must be a transaction"):
        queue.enqueue("acme", "mail", {}, tr="tr")


def test_a_payload_over_the_limit_is_a_payload_error_naming_the_remedy(
    queue: qq.JobQueue,
) -> None:
    with pytest.raises(qq.PayloadError) as caught:
        queue.enqueue("acme", "mail", {"blob": "x" * VALUE_LIMIT})
    message = str(caught.value)
    assert "'mail'" in message and "at most 99," in message
    assert "Store the large data elsewhere" in message and "reference" in message
    assert queue.stats().zones == 0
    # just under the limit is fine: the record (and the room running it needs) still fits
    job_id = queue.enqueue("acme", "mail", {"blob": "x" * 99_500})
    info = queue.get_job("acme", job_id)
    assert info is not None and len(info.payload["blob"]) == 99_500


def test_a_misspelt_topic_warns_when_the_queue_has_handlers(queue: qq.JobQueue) -> None:
    with pytest.warns(qq.UnknownTopicWarning, match="'mial'.*known: mail") as record:
        job_id = queue.enqueue("acme", "mial", {})
    assert record[0].filename == __file__  # points at the caller's line
    assert queue.get_job("acme", job_id) is not None  # still enqueued, as asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        queue.enqueue("acme", "mail", {})  # a known topic: no warning


def test_a_refused_job_does_not_also_warn(queue: qq.JobQueue) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(qq.InvalidArgument, match="priority"):
            queue.enqueue("acme", "mial", {}, priority=-1)


def test_a_queue_without_handlers_does_not_warn(db: qq.Database, clock: qq.ManualClock) -> None:
    producer_only = qq.JobQueue(db, clock=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        producer_only.enqueue("acme", "anything", {})


def test_purge_dead_removes_one_dead_letter(queue: qq.JobQueue) -> None:
    @queue.job(topic="doomed")
    class Doomed:
        def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard:
            return qq.Discard("no")

    first, second = (queue.enqueue("acme", "doomed", {"n": n}) for n in (1, 2))
    queue.drain()
    assert {j.job_id for j in queue.dead_letters("acme")} == {first, second}
    assert queue.purge_dead("acme", job_id=first) == 1
    assert queue.purge_dead("acme", job_id=first) == 0
    assert [j.job_id for j in queue.dead_letters("acme")] == [second]
    with pytest.raises(qq.InvalidArgument, match="tenant"):
        queue.purge_dead(job_id=second)


def test_the_public_methods_are_documented() -> None:
    for name in ("enqueue", "enqueue_many", "get_job", "cancel", "dead_letters", "retry_dead",
                 "purge_dead"):
        doc = getattr(qq.JobQueue, name).__doc__
        assert doc and len(doc) > 80, name
    doc = qq.JobQueue.enqueue.__doc__ or ""
    for words in ("in_", "at", "0..1000", "lower runs first", "key", "per tenant",
                  "PayloadError", "InvalidArgument", "1021", "reference"):
        assert words in doc, words


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_a_payload_with_nan_or_infinity_is_refused(queue: qq.JobQueue, number: float) -> None:
    with pytest.raises(qq.PayloadError, match=r"not JSON-serialisable.*finite numbers"):
        queue.enqueue("acme", "mail", {"x": number})
    assert queue.stats().zones == 0


def test_a_bad_queue_name_is_a_configuration_error(db: qq.Database) -> None:
    with pytest.raises(qq.ConfigurationError, match="queue name"):
        qq.JobQueue(db, name="")


def test_the_size_limit_counts_a_long_topic_and_key(queue: qq.JobQueue) -> None:
    topic, key = "\U0001f600" * 1000, "\U0001f600" * 1000  # 12 bytes each, escaped
    with pytest.raises(qq.PayloadError):
        queue.enqueue("acme", topic, {"blob": "x" * 80_000}, key=key)
    with pytest.warns(qq.UnknownTopicWarning):
        job_id = queue.enqueue("acme", topic, {"blob": "x" * 70_000}, key=key)
    job = queue.get_job("acme", job_id)
    assert job is not None and job.topic == topic and job.key == key


def test_get_job_shows_the_limit_of_the_handler_that_will_judge_the_job(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    producer = qq.JobQueue(db, clock=clock, max_retries=5)  # knows no handler
    job_id = producer.enqueue("acme", "strict", {})
    assert producer.get_job("acme", job_id).max_retries == 5  # type: ignore[union-attr]

    @qq.job(topic="strict", max_retries=1)
    class Strict:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            pass

    worker = qq.JobQueue(db, jobs=[Strict], clock=clock)
    assert worker.get_job("acme", job_id).max_retries == 1  # type: ignore[union-attr]
    explicit = producer.enqueue("acme", "strict", {}, max_retries=7)
    assert worker.get_job("acme", explicit).max_retries == 7  # type: ignore[union-attr]


class _Noting(FaultyDatabase):
    """The real engine (no faults injected), counting the enqueue's change notices."""

    notices = 0

    def notify_change(self, tr: qq.Transaction) -> None:
        _Noting.notices += 1
        super().notify_change(tr)


def test_every_enqueue_tells_the_engine_of_new_work(db: qq.Database, clock: qq.ManualClock) -> None:
    _Noting.notices = 0  # (the test runs once per engine in one process)
    queue = qq.JobQueue(_Noting(db), jobs=[Mail], clock=clock)
    queue.enqueue("acme", "mail", {})
    queue.enqueue_many([("acme", "mail", {}), ("b", "mail", {})])
    queue.db.transact(lambda tr: queue.enqueue("c", "mail", {}, tr=tr))
    assert _Noting.notices == 3
    assert queue.stats().ready == 4


def test_an_enqueue_many_too_large_for_one_transaction_is_refused_clearly(
    queue: qq.JobQueue,
) -> None:
    jobs = [("acme", "mail", {"blob": "x" * 95_000}) for _ in range(100)]  # 9.5 MB
    with pytest.raises(qq.InvalidArgument, match="split the jobs over"):
        queue.enqueue_many(jobs)
    assert queue.stats().zones == 0
    assert len(queue.enqueue_many(jobs[:50])) == 50
