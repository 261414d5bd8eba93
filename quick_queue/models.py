"""The queue's data: the stored records (``quick_queue.stored``), the id makers
(``quick_queue.ids``) and the public views built from them.

The public views (``JobInfo``, ``QueueStats``) speak seconds and ``datetime``; the stored
records speak integer microseconds since the UNIX epoch.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quick_queue.header import new_record_template
from quick_queue.ids import IdMaker, new_job_id, new_token, seed_ids
from quick_queue.jsoncodec import dump, load
from quick_queue.stored import (
    DEFAULT_MAX_RETRIES,
    RUNTIME_ROOM,
    US,
    VALUE_LIMIT,
    DeadRecord,
    JobRecord,
    LeasedJob,
    PointerRecord,
    record_overhead,
    to_datetime,
    to_us,
)

STATE_NAMES = {"r": "ready", "s": "scheduled", "l": "leased", "d": "dead"}


@dataclass(frozen=True)
class JobInfo:
    """A job as ``get_job``, ``dead_letters`` and the CLI show it.

    ``state`` is ready, scheduled, leased, dead, or unreadable (a live record that could not be
    decoded: ``payload`` is then its stored bytes and ``last_error`` says what failed; the next
    worker to meet it moves it to the dead letters, ``dead_kind`` "unreadable"). A payload
    that is not JSON is likewise given as ``bytes``.

    A job that kept its result (``keep_result``) is shown after it ended, until ``kept_until``,
    with state completed, dead, discarded or cancelled: ``result`` is the returned value
    (``result_note`` says why there is none), ``started_at``/``finished_at``/``duration`` its
    last run; its payload is not kept (None). ``progress`` is the last ``meta.progress()``
    report of a running job."""

    job_id: str
    tenant: str
    topic: str
    state: str  # ready | scheduled | leased | dead
    attempt: int
    max_retries: int
    priority: int
    payload: Any
    due_at: datetime | None
    enqueued_at: datetime
    last_error: str | None = None
    reason: str | None = None
    dead_kind: str | None = None
    snoozes: int = 0
    lease_expires_at: datetime | None = None
    key: str | None = None
    result: Any = None
    result_note: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    kept_until: datetime | None = None
    progress: Any = None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "job_id": self.job_id, "tenant": self.tenant, "topic": self.topic,
            "state": self.state, "attempt": self.attempt, "max_retries": self.max_retries,
            "priority": self.priority, "payload": _json_payload(self.payload),
            "due_at": iso(self.due_at),
            "enqueued_at": iso(self.enqueued_at), "last_error": self.last_error,
            "reason": self.reason, "dead_kind": self.dead_kind, "snoozes": self.snoozes,
            "lease_expires_at": iso(self.lease_expires_at), "key": self.key,
            "result": self.result, "result_note": self.result_note,
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "duration": self.duration, "kept_until": iso(self.kept_until),
            "progress": self.progress,
        }

    @classmethod
    def of_record(cls, tenant: str, record: JobRecord) -> JobInfo:
        if record.state == "d":
            return cls.of_dead(tenant, DeadRecord(record))
        leased = record.state == "l"
        return cls(
            job_id=record.job_id, tenant=tenant, topic=record.topic,
            state=STATE_NAMES[record.state], attempt=record.attempt,
            max_retries=record.max_retries, priority=record.priority,
            payload=record.payload_or_raw(),
            due_at=None if leased else to_datetime(record.at),
            enqueued_at=to_datetime(record.enqueued), last_error=record.error,
            snoozes=record.snoozes, lease_expires_at=to_datetime(record.at) if leased else None,
            key=record.key, progress=record.progress,
        )

    @classmethod
    def unreadable(cls, tenant: str, record: JobRecord) -> JobInfo:
        """A live record that could not be decoded (``JobRecord.unreadable``'s result)."""
        return cls(
            job_id=record.job_id, tenant=tenant, topic=record.topic, state="unreadable",
            attempt=0, max_retries=record.max_retries, priority=record.priority,
            payload=record.payload_raw, due_at=None, enqueued_at=to_datetime(record.enqueued),
            last_error=record.reason, reason=record.reason,
        )

    @classmethod
    def of_dead(cls, tenant: str, dead: DeadRecord) -> JobInfo:
        return cls(
            job_id=dead.job_id, tenant=tenant, topic=dead.topic, state="dead",
            attempt=dead.attempt, max_retries=dead.max_retries, priority=dead.priority,
            payload=dead.payload, due_at=None, enqueued_at=to_datetime(dead.enqueued),
            last_error=dead.reason, reason=dead.reason, dead_kind=dead.kind,
            snoozes=dead.snoozes, key=dead.key,
        )


def _json_payload(payload: Any) -> Any:
    # the stored bytes of an unreadable record are not JSON: hand them over as base64
    if isinstance(payload, bytes):
        return {"unreadable_bytes_base64": base64.b64encode(payload).decode()}
    return payload


@dataclass
class ZoneStats:
    tenant: str
    ready: int = 0
    scheduled: int = 0
    leased: int = 0
    next_due: datetime | None = None
    pointer_leased: bool = False


@dataclass
class QueueStats:
    """Counts read from the store: per state, per topic, and the zones with work."""

    ready: int = 0
    scheduled: int = 0
    leased: int = 0
    dead: int = 0
    zones: int = 0
    due_zones: int = 0
    topics: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_due_age: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready, "scheduled": self.scheduled, "leased": self.leased,
            "dead": self.dead, "zones": self.zones, "due_zones": self.due_zones,
            "topics": self.topics, "oldest_due_age_seconds": self.oldest_due_age,
        }


__all__ = [
    "DEFAULT_MAX_RETRIES",
    "RUNTIME_ROOM",
    "STATE_NAMES",
    "US",
    "VALUE_LIMIT",
    "DeadRecord",
    "IdMaker",
    "JobInfo",
    "JobRecord",
    "LeasedJob",
    "PointerRecord",
    "QueueStats",
    "ZoneStats",
    "dump",
    "load",
    "new_job_id",
    "new_record_template",
    "new_token",
    "record_overhead",
    "seed_ids",
    "to_datetime",
    "to_us",
]
