"""The queue's data: stored records and the public views built from them.

Stored records are compact JSON; times inside them are integer microseconds since the UNIX epoch.
The public views (``JobInfo``, ``QueueStats``) speak seconds and ``datetime``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

US = 1_000_000
# Module-level coder objects skip json.dumps/loads' per-call set-up (a few us on every job).
_encode = json.JSONEncoder(separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


_str = json.encoder.encode_basestring_ascii


def _opt(value: str | None) -> str:
    return "null" if value is None else str(_str(value))


def dump(value: Any) -> bytes:
    return _encode(value).encode()


def load(raw: bytes) -> Any:
    return _decode(raw.decode())

STATE_NAMES = {"r": "ready", "s": "scheduled", "l": "leased", "d": "dead"}


def to_us(seconds: float) -> int:
    return round(seconds * US)


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, tz=UTC)


_last_id_us = 0


def new_job_id() -> str:
    """24 hex characters: 14 of wall-clock microseconds (so ids sort by creation), 10 random."""
    global _last_id_us
    now = time.time_ns() // 1000
    # strictly increasing within a process, so ids made in one burst keep their order
    now = max(now, _last_id_us + 1)
    _last_id_us = now
    return f"{now:014x}{os.urandom(5).hex()}"


def new_token() -> str:
    return os.urandom(8).hex()


_UNSET: Any = object()


class JobRecord:
    """A live job as stored at ``zones/{tenant}/items/{job_id}``.

    Stored as two JSON texts joined by a newline: the header, then the payload. Compact JSON
    never contains a raw newline, so the split is exact, and the payload's text is carried
    through lease, retry and release without being parsed or re-encoded: only a handler that
    runs it (or ``get_job``) parses it.
    """

    __slots__ = (
        "_payload",
        "_payload_raw",
        "at",
        "attempt",
        "enqueued",
        "error",
        "job_id",
        "key",
        "max_retries",
        "priority",
        "seq",
        "snoozes",
        "state",
        "token",
        "topic",
    )

    def __init__(
        self,
        job_id: str,
        topic: str,
        payload: Any,
        priority: int,
        max_retries: int,
        state: str,
        at: int,
        seq: int,
        enqueued: int,
        *,
        attempt: int = 0,
        snoozes: int = 0,
        token: str | None = None,
        error: str | None = None,
        key: str | None = None,
        payload_raw: bytes | None = None,
    ) -> None:
        self.job_id = job_id
        self.topic = topic
        self._payload = payload if payload_raw is None else _UNSET
        self._payload_raw = payload_raw
        self.priority = priority
        self.max_retries = max_retries
        self.state = state  # "r" ready, "s" scheduled, "l" leased
        self.at = at  # the time in the state's index: due (ready/scheduled) or lease expiry
        self.seq = seq  # FIFO position inside a priority: when the job became due
        self.enqueued = enqueued
        self.attempt = attempt
        self.snoozes = snoozes
        self.token = token
        self.error = error
        self.key = key

    @property
    def payload(self) -> Any:
        if self._payload is _UNSET:
            self._payload = load(self._payload_raw or b"null")
        return self._payload

    @payload.setter
    def payload(self, value: Any) -> None:
        self._payload, self._payload_raw = value, None

    @property
    def payload_raw(self) -> bytes:
        if self._payload_raw is None:
            self._payload_raw = dump(self._payload)
        return self._payload_raw

    def encode(self) -> bytes:
        # The header is formatted directly (what json.dumps would write, at a fraction of the
        # cost on the hot path): strings through json's own escaper, numbers are ints.
        header = (
            f'{{"t":{_str(self.topic)},"pr":{int(self.priority)},"m":{int(self.max_retries)},'
            f'"st":{_str(self.state)},"at":{int(self.at)},"sq":{int(self.seq)},'
            f'"e":{int(self.enqueued)},"a":{int(self.attempt)},"sn":{int(self.snoozes)},'
            f'"tk":{_opt(self.token)},"er":{_opt(self.error)},"k":{_opt(self.key)}}}'
        )
        return header.encode() + b"\n" + self.payload_raw

    @classmethod
    def decode(cls, job_id: str, raw: bytes) -> JobRecord:
        head, _, body = raw.partition(b"\n")
        d = load(head)
        return cls(
            job_id, d["t"], _UNSET, d["pr"], d["m"], d["st"], d["at"], d["sq"], d["e"],
            attempt=d["a"], snoozes=d["sn"], token=d["tk"], error=d["er"], key=d["k"],
            payload_raw=body,
        )


@dataclass(frozen=True)
class DeadRecord:
    """A dead letter as stored at ``dead/{tenant}/{job_id}``."""

    job_id: str
    topic: str
    payload: Any
    priority: int
    max_retries: int
    attempt: int
    snoozes: int
    enqueued: int
    died: int
    kind: str  # failed | discarded | unknown_topic | bad_payload | lease_expired | snoozed_out
    reason: str
    key: str | None = None

    def encode(self) -> bytes:
        return dump(
            {
                "t": self.topic, "p": self.payload, "pr": self.priority, "m": self.max_retries,
                "a": self.attempt, "sn": self.snoozes, "e": self.enqueued, "d": self.died,
                "kd": self.kind, "r": self.reason, "k": self.key,
            }
        )

    @classmethod
    def decode(cls, job_id: str, raw: bytes) -> DeadRecord:
        d = load(raw)
        return cls(
            job_id, d["t"], d["p"], d["pr"], d["m"], d["a"], d["sn"], d["e"], d["d"], d["kd"],
            d["r"], d.get("k"),
        )

    @classmethod
    def of(cls, record: JobRecord, died: int, kind: str, reason: str) -> DeadRecord:
        return cls(
            record.job_id, record.topic, record.payload, record.priority, record.max_retries,
            record.attempt, record.snoozes, record.enqueued, died, kind, reason, record.key,
        )


class PointerRecord:
    """``pointers/record/{tenant}``: when the zone is next due, and who leases it."""

    __slots__ = ("last_active", "lease_expiry", "token", "vesting")

    def __init__(
        self, vesting: int, token: str | None = None, lease_expiry: int = 0, last_active: int = 0
    ) -> None:
        self.vesting = vesting
        self.token = token
        self.lease_expiry = lease_expiry
        self.last_active = last_active

    def leased(self, now: int) -> bool:
        return self.token is not None and self.lease_expiry > now

    def encode(self) -> bytes:
        return dump([self.vesting, self.token, self.lease_expiry, self.last_active])

    @classmethod
    def decode(cls, raw: bytes) -> PointerRecord:
        v, tk, le, la = load(raw)
        return cls(v, tk, le, la)


@dataclass(frozen=True)
class LeasedJob:
    """What a dequeue hands the runtime: the record as leased, with its token."""

    tenant: str
    record: JobRecord

    @property
    def token(self) -> str:
        assert self.record.token is not None
        return self.record.token


@dataclass(frozen=True)
class JobInfo:
    """A job as ``get_job``, ``dead_letters`` and the CLI show it."""

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

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "job_id": self.job_id, "tenant": self.tenant, "topic": self.topic,
            "state": self.state, "attempt": self.attempt, "max_retries": self.max_retries,
            "priority": self.priority, "payload": self.payload, "due_at": iso(self.due_at),
            "enqueued_at": iso(self.enqueued_at), "last_error": self.last_error,
            "reason": self.reason, "dead_kind": self.dead_kind, "snoozes": self.snoozes,
            "lease_expires_at": iso(self.lease_expires_at), "key": self.key,
        }

    @classmethod
    def of_record(cls, tenant: str, record: JobRecord) -> JobInfo:
        leased = record.state == "l"
        return cls(
            job_id=record.job_id, tenant=tenant, topic=record.topic,
            state=STATE_NAMES[record.state], attempt=record.attempt,
            max_retries=record.max_retries, priority=record.priority, payload=record.payload,
            due_at=None if leased else to_datetime(record.at),
            enqueued_at=to_datetime(record.enqueued), last_error=record.error,
            snoozes=record.snoozes, lease_expires_at=to_datetime(record.at) if leased else None,
            key=record.key,
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
