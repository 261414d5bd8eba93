"""Where a running job's ``meta.progress(...)`` reports go: one ``ProgressWriter`` per queue
(consumer), bound to each ``JobMeta`` with the job's lease token (``meta.bind_progress``).
Each report is one small transaction with relaxed durability (``core.progress.report``:
written only while that lease holds)."""

from __future__ import annotations

from typing import Any

from quick_queue.core.progress import report
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction


class ProgressWriter:
    """``writer(tenant, job_id, token, value)`` stores a report; returns whether it did."""

    __slots__ = ("db", "layout")

    def __init__(self, db: Database, layout: Layout) -> None:
        self.db = db
        self.layout = layout

    def __call__(self, tenant: str, job_id: str, token: str, value: Any) -> bool:
        def store(tr: Transaction) -> bool:
            tr.options.set_relaxed_durability()  # a lost report is harmless
            return report(tr, self.layout, tenant, job_id, token, value)

        return self.db.transact(store)
