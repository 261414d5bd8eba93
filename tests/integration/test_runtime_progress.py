"""A running worker wires ``meta.progress``: a handler's report reaches the store while it
runs (issue 12), for plain and async handlers alike."""

from __future__ import annotations

from typing import Any

import quick_queue as qq


def test_a_running_handler_reports_progress_that_get_job_shows(db: qq.Database) -> None:
    queue = qq.JobQueue(db)
    seen: list[Any] = []

    @queue.job(topic="roast")
    class Roast:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            written = meta.progress({"done": 3, "of": 4}, force=True)
            info = queue.get_job(meta.tenant, meta.job_id)
            seen.append((written, info.progress if info else None))

    queue.enqueue("shop", "roast", {})
    summary = queue.drain(concurrency=1)
    assert summary.completed == 1
    assert seen == [(True, {"done": 3, "of": 4})]


def test_an_async_handler_reports_progress_too(db: qq.Database) -> None:
    queue = qq.JobQueue(db)
    seen: list[Any] = []

    @queue.job(topic="steam")
    class Steam:
        async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            written = await meta.progress_async("half", force=True)
            info = queue.get_job(meta.tenant, meta.job_id)
            seen.append((written, info.progress if info else None))

    queue.enqueue("shop", "steam", {})
    assert queue.drain(concurrency=2).completed == 1
    assert seen == [(True, "half")]
