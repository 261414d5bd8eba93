"""The live workers of a queue, as views show them (``inspect``, the dashboard): a thin reader
over ``core.workers`` that takes any read context (a ``JobQueue`` or its queue context) and
judges lapsed heartbeats by the store's time, the one every worker beats with."""

from __future__ import annotations

from quick_queue.core.workers import WorkerInfo, live_workers
from quick_queue.read_model import ReadContext


def workers(ctx: ReadContext, limit: int = 1000, now: float | None = None) -> list[WorkerInfo]:
    """The workers of the queue whose heartbeat has not lapsed (one snapshot read; at most
    ``limit``), oldest first."""
    at = ctx.db.store_time() if now is None else now
    found = ctx.db.transact(lambda tr: live_workers(tr.snapshot, ctx.layout.name, at, limit))
    return sorted(found, key=lambda w: (w.started, w.worker_id))
