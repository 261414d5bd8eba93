"""The event stream: what subscribers see, the Summary counted from it, and the worker log
(``run(log=...)``, escaped tenant names)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.events import EventKind, JobEvent, safe
from tests.conftest import QueueFactory


@qq.job(topic="ev:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


@qq.job(topic="ev:fail", max_retries=1, backoff_base=0.001, backoff_cap=0.001)
class Fail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("no")


@qq.job(topic="ev:snooze")
class Nap:
    def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Snooze | None:
        return qq.Snooze(3600) if meta.snoozes == 0 else None


@qq.job(topic="ev:discard")
class Drop:
    def perform(self, payload: Any, meta: qq.JobMeta) -> qq.Discard:
        return qq.Discard("unwanted")


def _collect(queue: qq.JobQueue) -> list[JobEvent]:
    seen: list[JobEvent] = []
    lock = threading.Lock()

    def keep(event: JobEvent) -> None:
        with lock:
            seen.append(event)

    queue.events.subscribe(keep)
    return seen


def test_subscribers_see_every_state_change_with_attempt_and_duration(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Ok, Fail, Nap, Drop)
    seen = _collect(queue)
    ok = queue.enqueue("t1", "ev:ok", {})
    failing = queue.enqueue("t1", "ev:fail", {})
    nap = queue.enqueue("t2", "ev:snooze", {})
    drop = queue.enqueue("t2", "ev:discard", {})
    with pytest.warns(qq.UnknownTopicWarning):
        ghost = queue.enqueue("t2", "ev:unknown", {})
    first = queue.drain(concurrency=2, timeout=10)
    clock.advance(1)  # the retry is due
    second = queue.drain(concurrency=2, timeout=10)

    def kinds(job_id: str) -> list[tuple[EventKind, int]]:
        return [(e.kind, e.attempt) for e in seen if e.job_id == job_id]

    assert kinds(ok) == [(EventKind.STARTED, 1), (EventKind.COMPLETED, 1)]
    assert kinds(failing) == [(EventKind.STARTED, 1), (EventKind.RETRIED, 1),
                              (EventKind.STARTED, 2), (EventKind.DEAD, 2)]
    assert kinds(nap) == [(EventKind.STARTED, 1), (EventKind.SNOOZED, 1)]
    assert kinds(drop) == [(EventKind.STARTED, 1), (EventKind.DISCARDED, 1)]
    assert kinds(ghost) == [(EventKind.DEAD, 1)]  # never started: no handler
    done = next(e for e in seen if e.job_id == ok and e.kind is EventKind.COMPLETED)
    assert done.tenant == "t1" and done.topic == "ev:ok"
    assert done.duration is not None and done.duration >= 0
    dead = next(e for e in seen if e.job_id == failing and e.kind is EventKind.DEAD)
    assert "RuntimeError: no" in dead.reason and dead.outcome == "retry"
    # The summaries count the same events (nothing else counts outcomes).
    assert (first.completed, first.retried, first.failed, first.snoozed, first.discarded,
            first.dead) == (1, 1, 1, 1, 1, 2)
    assert (second.failed, second.dead, second.retried) == (1, 1, 0)


def test_unsubscribe_stops_the_calls_and_a_failing_subscriber_stops_nothing(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Ok)
    seen = _collect(queue)
    calls: list[JobEvent] = []

    def broken(event: JobEvent) -> None:
        calls.append(event)
        raise RuntimeError("observer bug")

    queue.events.subscribe(broken)
    queue.enqueue("t", "ev:ok", {})
    assert queue.drain(timeout=10).completed == 1
    assert len(calls) == 2 and len(seen) == 2
    queue.events.unsubscribe(broken)
    queue.enqueue("t", "ev:ok", {})
    assert queue.drain(timeout=10).completed == 1
    assert len(calls) == 2 and len(seen) == 4


def test_run_logs_state_changes_like_the_cli_worker(
    make_queue: QueueFactory, capfd: pytest.CaptureFixture[str], background: Any,
    wait_until: Any,
) -> None:
    queue = make_queue(Ok)
    job_id = queue.enqueue("acme", "ev:ok", {})
    run = background(queue.run, concurrency=1, log=True)
    wait_until(lambda: queue.get_job("acme", job_id) is None, what="the job")
    queue.stop()
    assert run.result().completed == 1
    err = capfd.readouterr().err
    assert f"start ev:ok acme/{job_id} attempt 1" in err
    assert f"done ev:ok acme/{job_id}" in err


def test_run_log_false_stays_quiet(
    make_queue: QueueFactory, capfd: pytest.CaptureFixture[str], background: Any,
    wait_until: Any,
) -> None:
    queue = make_queue(Ok)
    job_id = queue.enqueue("acme", "ev:ok", {})
    run = background(queue.run, concurrency=1, log=False)
    wait_until(lambda: queue.get_job("acme", job_id) is None, what="the job")
    queue.stop()
    run.result()
    assert "ev:ok" not in capfd.readouterr().err


def test_control_characters_in_tenants_are_escaped_in_log_lines(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue(Fail)
    tenant = "evil\x1b[31m\nFAKE done line\x00"
    queue.enqueue(tenant, "ev:fail", {})
    with caplog.at_level("INFO", logger="quick_queue.worker"):
        assert queue.drain(timeout=10).retried == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "quick_queue.worker"]
    assert lines and all("\n" not in line and "\x1b" not in line and "\x00" not in line
                         for line in lines)
    assert any("evil\\x1b[31m\\nFAKE done line\\x00/" in line for line in lines)
    assert safe("plain tenant é") == "plain tenant é"


def test_a_cancelled_running_job_is_reported_as_cancelled_not_as_a_lost_lease(
    make_queue: QueueFactory, background: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()
    release = threading.Event()

    @qq.job(topic="ev:long")
    class Long:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.set()
            release.wait(10)

    queue = make_queue(Long)
    seen = _collect(queue)
    job_id = queue.enqueue("t", "ev:long", {})
    with caplog.at_level("INFO", logger="quick_queue.worker"):
        drain = background(queue.drain, concurrency=1)
        assert started.wait(5)
        assert queue.cancel("t", job_id)
        release.set()
        summary = drain.result()
    assert summary.stale == 1 and summary.completed == 0  # its result was dropped
    last = [e for e in seen if e.job_id == job_id][-1]
    assert last.kind is EventKind.CANCELLED
    lines = [r.getMessage() for r in caplog.records if r.name == "quick_queue.worker"]
    assert any(line.startswith(f"cancelled ev:long t/{job_id}") for line in lines)
    assert not any("lease was lost" in line for line in lines)  # before: "stale done ..."


def test_run_by_default_prints_warnings_but_not_every_state_change(
    make_queue: QueueFactory, capfd: pytest.CaptureFixture[str], background: Any,
    wait_until: Any,
) -> None:
    # A line per job would cost a busy worker much of its throughput: by default run() shows
    # only what needs attention, and the INFO lines are not even formatted.
    queue = make_queue(Ok)
    job_id = queue.enqueue("acme", "ev:ok", {})
    logger = logging.getLogger("quick_queue")
    saved = logger.handlers[:], logger.propagate
    logger.handlers.clear()
    logger.propagate = False  # no handler anywhere above: run() decides (pytest adds its own)
    try:
        run = background(queue.run, concurrency=1)
        wait_until(lambda: queue.get_job("acme", job_id) is None, what="the job")
        assert not logging.getLogger("quick_queue.worker").isEnabledFor(logging.INFO)
        logging.getLogger("quick_queue.worker").warning("a warning reaches stderr")
        queue.stop()
        assert run.result().completed == 1
    finally:
        logger.handlers[:], logger.propagate = saved
    err = capfd.readouterr().err
    assert "a warning reaches stderr" in err
    assert "start ev:ok" not in err and "done ev:ok" not in err
