"""Retry a dead letter with a replaced payload, in one transaction (the dashboard's "edit and
retry": an operator fixes the data a job died on and runs it again).

The payload is replaced in the dead letter itself, then ``admin.retry_dead`` brings it back
exactly as a plain retry does (ready now, a fresh retry budget), reading the replaced record
through the transaction's own writes. Either both happen or neither: a refused payload, a
conflict or a crash leaves the dead letter as it was.
"""

from __future__ import annotations

from collections.abc import Callable

from quick_queue.core import admin
from quick_queue.errors import UnreadableRecord
from quick_queue.keys import Layout
from quick_queue.kv.api import Transaction
from quick_queue.models import JobRecord, load

#: The new payload's stored JSON text for this dead letter (checked for its topic and key by
#: the caller's rules, which live above the core layer); raises to refuse it.
PayloadFor = Callable[[JobRecord], bytes]


def retry_edited(
    tr: Transaction, layout: Layout, tenant: str, job_id: str, payload_for: PayloadFor,
    now: int, slack: int,
) -> bool:
    """Replace the payload of dead letter ``job_id`` of ``tenant`` with ``payload_for(record)``
    and bring it back as a ready job; False if there is no such dead letter. An unreadable
    record is refused as ``retry_dead`` refuses it (``InvalidArgument``), before
    ``payload_for`` is asked."""
    key = layout.zone(tenant).dead_key(job_id)
    raw = tr.get(key)
    if raw is None:
        return False
    try:
        record = JobRecord.decode(job_id, raw)
    except UnreadableRecord:
        record = None  # retry_dead below refuses it with its own message
    if record is not None and not record.raw_body:
        # parsed back from the checked text, so the stored bytes are the ones checked
        record.payload = load(payload_for(record))
        tr.set(key, record.encode())
    return admin.retry_dead(tr, layout, tenant, job_id, now, slack)
