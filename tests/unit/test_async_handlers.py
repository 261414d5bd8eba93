"""``@job`` accepts ``async def perform`` (issue 12): the spec says so (``is_async``) for the
worker that will await it. Until the consumer awaits handlers, a worker that calls one fails
the attempt with a reason that says why, and leaves no un-awaited coroutine behind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import quick_queue as qq
from quick_queue.jobs import spec_of


@qq.job(topic="async:brew", max_retries=0)
class Brew:
    async def perform(self, payload: Any, meta: qq.JobMeta) -> str:
        return "brewed"


@qq.job(topic="sync:pour")
class Pour:
    def perform(self, payload: Any, meta: qq.JobMeta) -> str:
        return "poured"


def test_async_perform_is_accepted_and_marked() -> None:
    assert spec_of(Brew).is_async is True
    assert spec_of(Pour).is_async is False


def test_a_worker_that_cannot_await_says_so(make_queue: Callable[..., qq.JobQueue]) -> None:
    queue = make_queue(Brew)
    job_id = queue.enqueue("shop", "async:brew")
    summary = queue.drain(timeout=10)  # filterwarnings=error: a never-awaited warning fails
    assert summary.dead == 1
    dead = queue.get_job("shop", job_id)
    assert dead is not None and dead.state == "dead"
    assert "returned a coroutine" in (dead.reason or "")
