"""Progress reports of running jobs (``meta.progress(...)``, issue 12).

The last report lives in the job's own record (header field ``pg``), so it is shown by
``get_job`` while the job lives and goes away with the record: nothing to clean up, and the
completion path is untouched. A report is written only while the reporting worker still holds
the lease (token check), so a late report can never bring back a finished or cancelled job.
"""

from __future__ import annotations

from typing import Any

from quick_queue.core.records import load_record
from quick_queue.errors import UnreadableRecord
from quick_queue.keys import Layout
from quick_queue.kv.api import Transaction
from quick_queue.models import VALUE_LIMIT

PROGRESS_LIMIT = 4096  # bytes of JSON a report may take


def report(
    tr: Transaction, layout: Layout, tenant: str, job_id: str, token: str, value: Any
) -> bool:
    """Store ``value`` (JSON-ready, checked by the caller) as the job's progress; False when
    the lease is gone or the record has no room left for it (nothing is written then)."""
    zone = layout.zone(tenant)
    try:
        record = load_record(tr, zone, job_id)
    except UnreadableRecord:
        return False
    if record is None or record.state != "l" or record.token != token:
        return False
    record.progress = value
    raw = record.encode()
    if len(raw) > VALUE_LIMIT:
        return False
    tr.set(zone.item(job_id), raw)
    return True
