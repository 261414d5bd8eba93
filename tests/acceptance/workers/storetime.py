"""Move stored time back instead of waiting for it: make a job's lease expire *now*.

Child processes cannot share a ManualClock, so a test that kills or stops a worker process
rewrites the leased job's expiry (its record and its ``leased`` index entry, and drops the
extension record a lease extension left) to just before the present, and moves the zone's
pointer up so that a scanner looks at the zone at once. This is exactly the state the store
would be in once the lease ran out on its own.
"""

from __future__ import annotations

import time

import quick_queue as qq
from quick_queue.core.pointers import touch_pointer
from quick_queue.core.records import clear_lease, extension_key, load_record
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us


def expire_lease(queue: qq.JobQueue, tenant: str, job_id: str, now: float | None = None) -> bool:
    """Make the lease of a leased job expire at ``now`` (default: the wall clock); False when
    the job is not leased."""
    at = to_us(time.time() if now is None else now)
    layout = queue.layout

    def rewrite(tr: Transaction) -> bool:
        zone = layout.zone(tenant)
        record = load_record(tr, zone, job_id)
        if record is None or record.state != "l":
            return False
        # the entry is where the worker's last extension moved it (with its extension
        # record): clear both, and write the lease as dequeue does, expiring now
        clear_lease(tr, zone, record)
        record.at = at - 1
        tr.set(zone.leased_key(record.at, job_id), (record.token or "").encode())
        tr.set(zone.item(job_id), record.encode())
        touch_pointer(tr, layout, tenant, record.at, at, 0)
        return True

    return queue.db.transact(rewrite)


def lease_extended(queue: qq.JobQueue, tenant: str, job_id: str) -> bool:
    """Whether the job's lease has been extended (its keeper moved the lease and left an
    extension record): a test waits for it so ``expire_lease`` meets an extended lease."""
    key = extension_key(queue.layout.zone(tenant), job_id)
    return queue.db.transact(lambda tr: tr.get(key)) is not None
