"""The API pinned by the issue, end to end, as an application uses it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest

import quick_queue as qq


class EmailPayload(pydantic.BaseModel):
    to: str
    subject: str = "hello"


@qq.job(topic="email:send", priority=50, max_retries=3)
class SendEmail:
    Payload = EmailPayload
    sent: list[tuple[str, str, int]] = []

    def perform(self, payload: EmailPayload, meta: qq.JobMeta) -> None:
        assert isinstance(payload, EmailPayload)
        SendEmail.sent.append((meta.tenant, payload.to, meta.attempt))


@qq.job(topic="always:fails", max_retries=0)
class AlwaysFails:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("it is broken")


@pytest.fixture(autouse=True)
def _clear() -> None:
    SendEmail.sent.clear()


@pytest.fixture
def queue(db: qq.Database, clock: qq.ManualClock) -> qq.JobQueue:
    return qq.JobQueue(db, name="shop", jobs=[SendEmail, AlwaysFails], clock=clock,
                       item_lease=60, max_snoozes=5)


def _state(queue: qq.JobQueue, tenant: str, job_id: str) -> str | None:
    info = queue.get_job(tenant, job_id)
    return None if info is None else info.state


# -- open and construct -----------------------------------------------------------------------
def test_open_sqlite_file_and_use_it(tmp_path: Path) -> None:
    with qq.open(f"sqlite:///{tmp_path}/jobs.db") as db:
        queue = qq.JobQueue(db, jobs=[SendEmail])
        queue.enqueue("acme", "email:send", {"to": "a@b.c"})
        assert queue.drain().completed == 1
    assert (tmp_path / "jobs.db").exists()
    assert SendEmail.sent == [("acme", "a@b.c", 1)]


def test_a_job_survives_reopening_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    with qq.open(url) as db:
        job_id = qq.JobQueue(db).enqueue("acme", "email:send", {"to": "x"})
    with qq.open(url) as db:
        queue = qq.JobQueue(db, jobs=[SendEmail])
        assert _state(queue, "acme", job_id) == "ready"
        assert queue.drain().completed == 1


@pytest.mark.parametrize("url", ["nope", "mysql://x", "sqlite://", "memory://x", ""])
def test_open_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        qq.open(url)


def test_queue_construction_errors(db: qq.Database) -> None:
    with pytest.raises(TypeError, match="database"):
        qq.JobQueue("sqlite:///x.db")
    with pytest.raises(TypeError, match="no_such_setting"):
        qq.JobQueue(db, no_such_setting=1)
    with pytest.raises(ValueError, match="item_lease"):
        qq.JobQueue(db, item_lease=0)
    with pytest.raises(ValueError, match="max_retries"):
        qq.JobQueue(db, max_retries=-1)
    with pytest.raises(TypeError, match="@job"):
        qq.JobQueue(db, jobs=[object])


def test_handler_registration_errors(db: qq.Database) -> None:
    with pytest.raises(TypeError, match="perform"):
        @qq.job(topic="x")
        class NoPerform:
            pass

    @qq.job(topic="email:send")
    class Impostor:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            pass

    with pytest.raises(ValueError, match="email:send"):
        qq.JobQueue(db, jobs=[SendEmail, Impostor])
    with pytest.raises(ValueError, match="topic"):
        qq.job(topic="")


def test_queue_job_decorator_registers(db: qq.Database, clock: qq.ManualClock) -> None:
    queue = qq.JobQueue(db, clock=clock)
    ran: list[int] = []

    @queue.job(topic="inline")
    class Inline:
        def perform(self, payload: int, meta: qq.JobMeta) -> None:
            ran.append(payload)

    queue.enqueue("t", "inline", 7)
    assert queue.drain().completed == 1 and ran == [7]


# -- enqueue ----------------------------------------------------------------------------------
def test_enqueue_options_and_get_job_states(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    now = clock.now()
    ready = queue.enqueue("acme", "email:send", {"to": "r"})
    in_seconds = queue.enqueue("acme", "email:send", {"to": "s"}, in_=30)
    in_delta = queue.enqueue("acme", "email:send", {"to": "d"}, in_=timedelta(minutes=1))
    eastern = timezone(timedelta(hours=-5))
    at = queue.enqueue(
        "acme", "email:send", {"to": "a"},
        at=datetime.fromtimestamp(now + 90, tz=UTC).astimezone(eastern),
    )
    custom = queue.enqueue("acme", "email:send", {"to": "c"}, priority=7, max_retries=9)

    info = queue.get_job("acme", ready)
    assert info is not None
    assert (info.state, info.attempt, info.priority, info.max_retries) == ("ready", 0, 50, 3)
    assert info.payload == {"to": "r", "subject": "hello"}  # validated and stored by the model
    assert info.tenant == "acme" and info.topic == "email:send" and info.job_id == ready
    assert info.enqueued_at == datetime.fromtimestamp(now, tz=UTC)
    for job_id, delay in ((in_seconds, 30), (in_delta, 60), (at, 90)):
        scheduled = queue.get_job("acme", job_id)
        assert scheduled is not None and scheduled.state == "scheduled"
        assert scheduled.due_at == datetime.fromtimestamp(now + delay, tz=UTC)
    custom_info = queue.get_job("acme", custom)
    assert custom_info is not None
    assert (custom_info.priority, custom_info.max_retries) == (7, 9)
    assert queue.get_job("acme", "no-such-job") is None
    assert queue.get_job("other-tenant", ready) is None
    json.dumps(info.to_dict())  # JSON-ready for the CLI


def test_get_job_shows_leased_while_running(
    queue: qq.JobQueue, background: Any, clock: qq.ManualClock
) -> None:
    started, release = threading.Event(), threading.Event()

    @qq.job(topic="slow")
    class Slow:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.set()
            release.wait(10)

    queue.register(Slow)
    job_id = queue.enqueue("acme", "slow", {})
    drain = background(queue.drain)
    assert started.wait(5)
    info = queue.get_job("acme", job_id)
    assert info is not None and info.state == "leased" and info.attempt == 1
    assert info.lease_expires_at == datetime.fromtimestamp(clock.now() + 60, tz=UTC)
    assert queue.stats().leased == 1
    release.set()
    assert drain.result().completed == 1
    assert queue.get_job("acme", job_id) is None


def test_key_makes_enqueue_idempotent(queue: qq.JobQueue) -> None:
    first = queue.enqueue("acme", "email:send", {"to": "a"}, key="order-1/email")
    second = queue.enqueue("acme", "email:send", {"to": "a"}, key="order-1/email")
    assert first == second
    assert queue.stats().ready == 1
    other = queue.enqueue("acme", "email:send", {"to": "a"}, key="order-2/email")
    assert other != first
    info = queue.get_job("acme", first)
    assert info is not None and info.key == "order-1/email"
    assert queue.drain().completed == 2

    dead = queue.enqueue("acme", "always:fails", {}, key="doomed")
    assert queue.drain().dead == 1
    assert queue.enqueue("acme", "always:fails", {}, key="doomed") == dead  # still a no-op
    assert queue.stats().ready == 0
    assert [d.job_id for d in queue.dead_letters()] == [dead]


def test_enqueue_many_writes_all(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    ids = queue.enqueue_many([
        ("acme", "email:send", {"to": "1"}),
        {"tenant": "globex", "topic": "email:send", "payload": {"to": "2"}, "priority": 1},
        {"tenant": "acme", "topic": "email:send", "payload": {"to": "3"}, "in_": 10},
    ])
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [_state(queue, t, i) for t, i in zip(["acme", "globex", "acme"], ids, strict=True)] \
        == ["ready", "ready", "scheduled"]
    assert queue.drain().completed == 2
    clock.advance(10)
    assert queue.drain().completed == 1


@pytest.mark.parametrize(
    "bad_item",
    [
        ("acme", "email:send", {"subject": "no recipient"}),  # fails the model
        {"tenant": "acme", "topic": "email:send", "payload": {"to": "x"}, "priority": 5000},
        {"tenant": "acme", "topic": "email:send", "payload": {"to": "x"}, "colour": "red"},
        ("acme", "email:send"),  # wrong shape
        "acme",  # not an item at all
        {"tenant": "", "topic": "email:send", "payload": {"to": "x"}},
    ],
)
def test_enqueue_many_is_all_or_nothing(queue: qq.JobQueue, bad_item: Any) -> None:
    items = [("acme", "email:send", {"to": "1"}), bad_item, ("acme", "email:send", {"to": "2"})]
    with pytest.raises(ValueError):
        queue.enqueue_many(items)
    stats = queue.stats()
    assert (stats.ready, stats.scheduled, stats.zones) == (0, 0, 0)
    assert queue.drain().completed == 0


def test_enqueue_many_inside_a_failed_transaction_writes_nothing(
    queue: qq.JobQueue, db: qq.Database
) -> None:
    def fail(tr: qq.Transaction) -> None:
        queue.enqueue_many([("acme", "email:send", {"to": "1"})] * 3, tr=tr)
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        db.transact(fail)
    assert queue.stats().ready == 0


# -- clear errors for bad input ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"at": datetime(2030, 1, 1)}, ValueError, "timezone-aware"),
        ({"at": "2030-01-01T00:00:00+00:00"}, ValueError, "timezone-aware"),
        ({"in_": -1}, ValueError, "in_"),
        ({"in_": timedelta(seconds=-5)}, ValueError, "in_"),
        ({"in_": float("nan")}, ValueError, "in_"),
        ({"in_": 5, "at": datetime(2030, 1, 1, tzinfo=UTC)}, ValueError, "in_ or at"),
        ({"priority": -1}, ValueError, "priority"),
        ({"priority": 1001}, ValueError, "priority"),
        ({"priority": True}, ValueError, "priority"),
        ({"priority": "high"}, ValueError, "priority"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"key": ""}, ValueError, "key"),
    ],
)
def test_enqueue_rejects_bad_arguments_clearly(
    queue: qq.JobQueue, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        queue.enqueue("acme", "email:send", {"to": "x"}, **kwargs)
    assert queue.stats().zones == 0


@pytest.mark.parametrize("payload", [object(), {"when": datetime(2030, 1, 1)}, {"s": {1, 2}}])
def test_enqueue_rejects_payloads_that_are_not_json(queue: qq.JobQueue, payload: Any) -> None:
    with pytest.raises(qq.PayloadError, match="JSON"):
        queue.enqueue("acme", "no-model-topic", payload)
    assert queue.stats().zones == 0


def test_enqueue_rejects_bad_tenants_and_topics(queue: qq.JobQueue) -> None:
    with pytest.raises(ValueError, match="tenant"):
        queue.enqueue("", "email:send", {"to": "x"})
    with pytest.raises(ValueError, match="tenant"):
        queue.enqueue(42, "email:send", {"to": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topic"):
        queue.enqueue("acme", "", {"to": "x"})


def test_pydantic_payload_objects_are_accepted(queue: qq.JobQueue) -> None:
    job_id = queue.enqueue("acme", "email:send", EmailPayload(to="m", subject="s"))
    info = queue.get_job("acme", job_id)
    assert info is not None and info.payload == {"to": "m", "subject": "s"}


# -- consuming and fixing ---------------------------------------------------------------------
def test_drain_returns_a_summary(queue: qq.JobQueue) -> None:
    queue.enqueue("acme", "email:send", {"to": "1"})
    queue.enqueue("acme", "always:fails", {})
    summary = queue.drain(concurrency=2)
    assert isinstance(summary, qq.Summary)
    assert (summary.completed, summary.failed, summary.dead) == (1, 1, 1)
    assert summary.zone_visits >= 1 and not summary.timed_out


def test_cancel(queue: qq.JobQueue) -> None:
    job_id = queue.enqueue("acme", "email:send", {"to": "x"}, in_=60)
    assert queue.cancel("acme", job_id)
    assert queue.get_job("acme", job_id) is None
    assert not queue.cancel("acme", job_id)
    assert not queue.cancel("acme", "never-existed")
    assert queue.drain().completed == 0
    assert queue.stats().topics["email:send"]["cancelled"] == 1


def test_dead_letters_retry_and_purge(queue: qq.JobQueue) -> None:
    a = queue.enqueue("acme", "always:fails", {"n": 1})
    b = queue.enqueue("globex", "always:fails", {"n": 2})
    with pytest.warns(qq.UnknownTopicWarning, match="nobody:handles"):
        c = queue.enqueue("globex", "nobody:handles", {"n": 3})
    queue.drain()
    dead = {d.job_id: d for d in queue.dead_letters()}
    assert set(dead) == {a, b, c}
    assert dead[a].dead_kind == "failed" and "it is broken" in (dead[a].reason or "")
    assert dead[c].dead_kind == "unknown_topic"
    assert all(d.state == "dead" for d in dead.values())
    assert {d.job_id for d in queue.dead_letters("globex")} == {b, c}
    assert len(queue.dead_letters(limit=2)) == 2
    assert queue.stats().dead == 3

    assert queue.retry_dead("acme", a)
    assert _state(queue, "acme", a) == "ready"
    assert not queue.retry_dead("acme", "never-existed")
    assert queue.drain().dead == 1  # it fails again
    assert queue.purge_dead("globex") == 2
    assert {d.job_id for d in queue.dead_letters()} == {a}
    assert queue.purge_dead() == 1
    assert queue.dead_letters() == [] and queue.stats().dead == 0


def test_stats(queue: qq.JobQueue, clock: qq.ManualClock) -> None:
    queue.enqueue("acme", "email:send", {"to": "1"})
    queue.enqueue("acme", "email:send", {"to": "2"}, in_=60)
    queue.enqueue("globex", "always:fails", {})
    before = queue.stats()
    assert isinstance(before, qq.QueueStats)
    assert (before.ready, before.scheduled, before.leased, before.dead) == (2, 1, 0, 0)
    assert before.zones == 2 and before.due_zones == 2
    assert before.topics["email:send"]["enqueued"] == 2
    queue.drain()
    after = queue.stats()
    assert (after.ready, after.scheduled, after.dead) == (0, 1, 1)
    assert after.topics["email:send"]["completed"] == 1
    assert after.topics["always:fails"]["dead"] == 1
    json.dumps(after.to_dict())


def test_queues_with_different_names_are_isolated(db: qq.Database, clock: qq.ManualClock) -> None:
    orders = qq.JobQueue(db, name="orders", jobs=[SendEmail], clock=clock)
    billing = qq.JobQueue(db, name="billing", jobs=[SendEmail], clock=clock)
    job_id = orders.enqueue("acme", "email:send", {"to": "o"})
    assert billing.get_job("acme", job_id) is None
    assert billing.stats().ready == 0
    assert billing.drain().completed == 0
    assert orders.drain().completed == 1


def test_run_and_stop(queue: qq.JobQueue, background: Any, wait_until: Any) -> None:
    run = background(queue.run, concurrency=2)
    queue.enqueue("acme", "email:send", {"to": "live"})
    wait_until(lambda: SendEmail.sent, what="the running consumer to pick the job up")
    queue.stop()
    summary = run.result(10)
    assert isinstance(summary, qq.Summary) and summary.completed == 1
    with pytest.raises(ValueError):
        queue.run(concurrency=0)
