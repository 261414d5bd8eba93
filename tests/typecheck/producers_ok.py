"""Producers mypy must accept (tests/unit/test_typed_producers.py checks this file)."""

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


@qq.job(topic="async:brew")
class AsyncBrew:
    async def perform(self, payload: SendEmail.Payload, meta: qq.JobMeta) -> str:
        return payload.to


async def produce(queue: qq.JobQueue) -> list[str]:
    ids = [
        queue.enqueue("shop", SendEmail, SendEmail.Payload(to="a@example.com")),
        queue.enqueue("shop", Untyped, {"anything": [1, 2]}),
        queue.enqueue("shop", AsyncBrew, SendEmail.Payload(to="c@example.com")),
        queue.enqueue("shop", "email:send", {"to": "a@example.com"}),  # strings still work
        await queue.enqueue_async("shop", SendEmail, SendEmail.Payload(to="b@example.com")),
        await queue.enqueue_async("shop", "email:send", {"to": "b@example.com"}, in_=5),
    ]
    return ids
