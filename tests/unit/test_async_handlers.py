"""``@job`` accepts ``async def perform`` (issue 12): the spec says so (``is_async``) for the
worker that awaits it; a plain ``perform`` is not marked."""

from __future__ import annotations

import inspect
from typing import Any

import quick_queue as qq
from quick_queue.jobs import interpret, spec_of


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


def test_a_plain_perform_returning_a_coroutine_is_a_clear_failure() -> None:
    async def later() -> str:
        return "never awaited"

    coroutine = later()
    verdict = interpret(coroutine, spec_of(Pour))
    assert isinstance(verdict, qq.Error)
    assert "returned a coroutine from a plain perform" in verdict.reason
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED  # no warning later
