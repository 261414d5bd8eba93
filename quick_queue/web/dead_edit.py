"""Edit a dead letter's payload and retry it (``POST /api/v1/dead/retry`` with ``payload``).

The new payload is checked as ``JobQueue.enqueue`` checks one for the dead letter's topic and
key: the handler's payload model when this server knows the handler (``--app``), JSON only,
the size limit (with room for the trace context the job carries, if any). The check runs
inside the retry's transaction, against the record it replaces, so a refusal writes nothing.
"""

from __future__ import annotations

from typing import Any

from quick_queue import tracing
from quick_queue.core import dead_edit
from quick_queue.models import JobRecord, to_us

# The producer's own checks (private there: enqueue is their only other caller), reused so an
# edited payload passes exactly what a new one would.
from quick_queue.producer import _check_size, _encode_payload
from quick_queue.queue import JobQueue


def retry_edited(queue: JobQueue, tenant: str, job_id: str, payload: dict[str, Any]) -> bool:
    """Replace dead letter ``job_id``'s payload with ``payload`` and make it ready now, in one
    transaction; False if there is no such dead letter. ``PayloadError`` (nothing written)
    when ``enqueue`` would refuse the payload for the job's topic."""

    def checked(record: JobRecord) -> bytes:
        spec = queue.registry.get(record.topic)
        raw = _encode_payload(record.topic, payload, spec)
        room = b" " * tracing.TRACE_ROOM if record.trace is not None else b""
        _check_size(record.topic, record.key, raw + room)
        return raw

    now = to_us(queue.clock.now())
    return bool(queue.db.transact(
        dead_edit.retry_edited, queue.layout, tenant, job_id, checked, now,
        to_us(queue.settings.pointer_slack),
    ))
