"""Producers mypy must reject, one error per marked line (see test_typed_producers.py)."""

from __future__ import annotations

from typing import Any

import pydantic

import quick_queue as qq


@qq.job(topic="email:send")
class SendEmail:
    class Payload(pydantic.BaseModel):
        to: str

    def perform(self, payload: SendEmail.Payload, meta: qq.JobMeta) -> None:
        return None


@qq.job(topic="any:thing")
class Untyped:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


async def produce(queue: qq.JobQueue) -> None:
    queue.enqueue("shop", SendEmail, {"to": "a@example.com"})  # error: a dict, not Payload
    queue.enqueue("shop", SendEmail, "a@example.com")  # error: a str
    await queue.enqueue_async("shop", SendEmail, 42)  # error: an int
