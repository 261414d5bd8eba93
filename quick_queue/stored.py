"""The stored formats: job records (live and dead), zone pointers, and their JSON coders.

Stored records are compact JSON; times inside them are integer microseconds since the UNIX epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from quick_queue.errors import InvalidArgument, UnreadableRecord
from quick_queue.header import (
    Header,
    HeaderError,
    decode_compiled,
    decode_header,
    encode_header,
    new_record_template,
)
from quick_queue.jsoncodec import dump, dump_text, load

US = 1_000_000
# dump/load (quick_queue.jsoncodec): compact JSON with allow_nan=False: NaN and infinities are
# not JSON; a payload holding one is refused at enqueue (a PayloadError) instead of being
# stored as text no other JSON reader accepts.
_str = json.encoder.encode_basestring_ascii


def _opt(value: str | None) -> str:
    return "null" if value is None else str(_str(value))

def to_us(seconds: float) -> int:
    return round(seconds * US)


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, tz=UTC)


_UNSET: Any = object()

# FoundationDB's (and the embedded engine's) largest value: a job record must stay under it.
VALUE_LIMIT = 100_000
# Bytes a record at enqueue leaves free for what running it adds: the lease token, a trimmed
# error, the dead-letter fields. Errors are trimmed to whatever room there is (``encode``).
RUNTIME_ROOM = 256
DEFAULT_MAX_RETRIES = 3  # the Settings default; a record that names none falls back to it
_TRIMMED = " [... trimmed to fit the record]"


class JobRecord:
    """A job as stored: live at ``zones/{tenant}/items/{job_id}``, dead at ``dead/...``.

    Stored as two JSON texts joined by a newline: the header, then the payload. Compact JSON
    never contains a raw newline, so the split is exact, and the payload's text is carried
    through lease, retry, release and burial without being parsed or re-encoded: only a handler
    that runs it (or ``get_job``) parses it.

    ``max_retries`` is the limit in force; ``retries_set`` says whether the producer fixed it
    (stored) or left it to the worker that runs the job (stored as null, read back as
    ``DEFAULT_MAX_RETRIES`` until the worker resolves it from its handler).

    A dead letter is the same record with state ``"d"`` and the dead fields: ``died`` (us),
    ``dead_kind`` and ``reason``. ``raw_body`` marks a dead letter of an unreadable record: its
    body is the bytes that were stored, not JSON.
    """

    __slots__ = (
        "_payload",
        "_payload_raw",
        "at",
        "attempt",
        "dead_kind",
        "died",
        "enqueued",
        "error",
        "job_id",
        "key",
        "max_retries",
        "priority",
        "progress",
        "raw_body",
        "reason",
        "retries_set",
        "seq",
        "snoozes",
        "state",
        "token",
        "topic",
        "trace",
    )

    def __init__(
        self,
        job_id: str,
        topic: str,
        payload: Any,
        priority: int,
        max_retries: int | None,
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
        self.retries_set = max_retries is not None
        self.max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.state = state  # "r" ready, "s" scheduled, "l" leased, "d" dead
        self.at = at  # the time in the state's index: due (ready/scheduled) or lease expiry
        self.seq = seq  # FIFO position inside a priority: when the job became due
        self.enqueued = enqueued
        self.attempt = attempt
        self.snoozes = snoozes
        self.token = token
        self.error = error
        self.key = key
        self.died = 0
        self.dead_kind: str | None = None
        self.reason: str | None = None
        self.raw_body = False
        self.progress: Any = None  # the last meta.progress() report (JSON), kept while live
        # W3C traceparent of the span that enqueued the job (only when tracing is on, see
        # quick_queue.otel): written as "tp" only when set, so untraced jobs pay nothing
        self.trace: str | None = None

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

    def payload_or_raw(self) -> Any:
        """The payload, or its stored bytes when they are not JSON (a damaged record)."""
        if self.raw_body:
            return self.payload_raw
        try:
            return self.payload
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            return self.payload_raw

    def resolve_max_retries(self, handler_max_retries: int | None) -> int:
        """The limit a failed attempt is judged by: the producer's, else the running
        handler's (``@job(max_retries=...)`` or the worker's queue setting), else the default."""
        if self.retries_set or handler_max_retries is None:
            return self.max_retries
        return handler_max_retries

    def bury(self, died: int, kind: str, reason: str) -> None:
        """Make this record a dead letter (its last error lives on in ``reason``)."""
        self.state, self.at, self.token, self.error = "d", died, None, None
        self.died, self.dead_kind, self.reason = died, kind, reason

    def _header_bytes(self) -> bytes:
        # The compiled codec (quick_queue.header) for the common record; the hand-formatted
        # text below for the rest: a progress report (checked JSON, kept as is) and text that
        # is not ASCII, which json writes as \u escapes, so a record's size (the limit is
        # checked at enqueue by ``record_overhead``) stays what it was, as do its bytes.
        dead = self.state == "d"
        if self.progress is None and _ascii(self.topic, self.token, self.error, self.key,
                                            self.trace) and (
            not dead or _ascii(self.dead_kind or "", self.reason, None, None, None)
        ):
            return encode_header(Header(
                self.topic, self.priority, self.max_retries if self.retries_set else None,
                self.state, self.at, self.seq, self.enqueued,  # type: ignore[arg-type]
                self.attempt, self.snoozes, self.token, self.error, self.key, None,
                self.trace, self.died if dead else 0, self.dead_kind if dead else None,
                self.reason if dead else None, self.raw_body and dead,
            ))
        return self._header().encode()

    def _header(self) -> str:
        # Formatted directly (what json.dumps would write, at a fraction of the cost on the
        # hot path): strings through json's own escaper, numbers are ints.
        retries = int(self.max_retries) if self.retries_set else "null"
        head = (
            f'{{"t":{_str(self.topic)},"pr":{int(self.priority)},"m":{retries},'
            f'"st":{_str(self.state)},"at":{int(self.at)},"sq":{int(self.seq)},'
            f'"e":{int(self.enqueued)},"a":{int(self.attempt)},"sn":{int(self.snoozes)},'
            f'"tk":{_opt(self.token)},"er":{_opt(self.error)},"k":{_opt(self.key)}'
        )
        if self.progress is not None:  # rare: only a handler that reports progress
            head += f',"pg":{dump_text(self.progress)}'
        if self.trace is not None:  # only when the producer traces (quick_queue.otel)
            head += f',"tp":{_str(self.trace)}'
        if self.state == "d":
            head += (
                f',"dd":{int(self.died)},"kd":{_opt(self.dead_kind)},"r":{_opt(self.reason)}'
                f',"raw":{"true" if self.raw_body else "false"}'
            )
        return head + "}"

    def lease(self, expiry: int, token: str) -> bytes:
        """Lease this ready record (state "l" until ``expiry``, one more attempt, ``token``)
        and return ``encode()``'s bytes (a test compares them over many records), its checks
        cut to a live record's (issue 10: 139.4k -> 137.6k instructions a job, callgrind)."""
        self.state, self.at, self.token = "l", expiry, token
        self.attempt += 1
        error, key, trace, body = self.error, self.key, self.trace, self._payload_raw
        if (
            self.progress is None and body is not None and self.topic.isascii()
            and token.isascii() and (error is None or error.isascii())
            and (key is None or key.isascii()) and (trace is None or trace.isascii())
        ):
            out = encode_header(Header(
                self.topic, self.priority, self.max_retries if self.retries_set else None,
                "l", expiry, self.seq, self.enqueued,
                self.attempt, self.snoozes, token, error, key, None, trace,
            )) + b"\n" + body
            if len(out) <= VALUE_LIMIT:
                return out
        return self.encode()  # (which trims an error too long for the value limit)

    def encode(self) -> bytes:
        """The stored value. An error or dead reason too long for the value limit is trimmed
        (the rest of the record is never cut), so saving a result cannot fail on size."""
        out = self._header_bytes() + b"\n" + self.payload_raw
        if len(out) > VALUE_LIMIT:
            out = self._encode_trimmed(out)
        return out

    def _encode_trimmed(self, out: bytes) -> bytes:
        for name in ("error", "reason"):
            text = getattr(self, name)
            while text and len(out) > VALUE_LIMIT:
                # each character costs at least one byte: cutting the excess (and room for
                # the note) in characters frees at least that many bytes; loop for escapes
                keep = max(0, len(text) - (len(out) - VALUE_LIMIT) - len(_TRIMMED))
                text = text[:keep] + _TRIMMED if keep else ""
                setattr(self, name, text)
                out = self._header_bytes() + b"\n" + self.payload_raw
        return out

    @classmethod
    def decode(cls, job_id: str, raw: bytes) -> JobRecord:
        """The record stored as ``raw``; ``UnreadableRecord`` when it is not one.

        The header is read by the compiled decoder, which checks the field types
        (``quick_queue.header``; ``decode_header`` only for what it refuses), and the slots
        are filled here rather than through ``__init__`` or a helper: this runs for every job
        leased and settled (issue 10: callgrind over the scanner path 136.2k -> 134.9k
        instructions a job without the two calls)."""
        head, newline, body = raw.partition(b"\n")
        try:
            if not newline:
                return _decode_old_dead(job_id, load(head))
            try:
                h = decode_compiled(head)
            except HeaderError:
                h = decode_header(head)  # (json's reading of what msgspec refuses, or raises)
        except (ValueError, KeyError, TypeError, AttributeError, HeaderError) as error:
            raise UnreadableRecord(
                f"the record of job {job_id!r}", raw, f"{type(error).__name__}: {error}"
            ) from None
        record = cls.__new__(cls)
        record.job_id, record.topic, record.priority = job_id, h.t, h.pr
        record._payload, record._payload_raw = _UNSET, body
        record.retries_set = h.m is not None
        record.max_retries = DEFAULT_MAX_RETRIES if h.m is None else h.m
        record.state, record.at, record.seq, record.enqueued = h.st, h.at, h.sq, h.e
        record.attempt, record.snoozes, record.token, record.error = h.a, h.sn, h.tk, h.er
        record.key, record.progress = h.k, h.pg
        record.trace = h.tp if type(h.tp) is str else None
        if h.st == "d":
            record.died, record.dead_kind, record.reason, record.raw_body = h.dd, h.kd, h.r, h.raw
        else:
            record.died, record.dead_kind, record.reason, record.raw_body = 0, None, None, False
        return record

    @classmethod
    def new_value(
        cls, job_id: str, topic: str, priority: int, max_retries: int | None, state: str,
        due: int, now: int, key: str | None, trace: str | None, payload_raw: bytes,
    ) -> bytes:
        """What ``JobRecord(...).encode()`` stores for a job just enqueued, without building
        the record (enqueue_many writes thousands)."""
        if key is None and trace is None and topic.isascii():
            return new_record_template(topic, priority, max_retries, state) % (
                due, due, now, payload_raw
            )
        if _ascii(topic, key, trace, None, None):
            head = encode_header(Header(
                topic, priority, max_retries, state, due, due, now,  # type: ignore[arg-type]
                0, 0, None, None, key, None, trace,
            ))
            return head + b"\n" + payload_raw
        record = cls(job_id, topic, None, priority, max_retries, state, due, due, now, key=key,
                     payload_raw=payload_raw)
        record.trace = trace
        return record.encode()

    @classmethod
    def unreadable(
        cls, job_id: str, raw: bytes, now: int, reason: str, priority: int
    ) -> JobRecord:
        """The dead letter of a record that could not be decoded: its stored bytes kept as the
        body (cut only if they and the dead fields would not fit one value)."""
        room = VALUE_LIMIT - RUNTIME_ROOM - len(job_id) - 200
        body = raw if len(raw) <= room else raw[:room]
        if len(body) < len(raw):
            reason += f" (raw bytes cut to the first {len(body):,} of {len(raw):,})"
        record = cls(job_id, "?", None, priority, None, "d", now, now, now, payload_raw=body)
        record.bury(now, "unreadable", reason)
        record.raw_body = True
        return record


def _ascii(a: str, b: str | None, c: str | None, d: str | None, e: str | None) -> bool:
    # Spelled out: a generator over the fields cost more than encoding the header.
    return (
        a.isascii() and (b is None or b.isascii()) and (c is None or c.isascii())
        and (d is None or d.isascii()) and (e is None or e.isascii())
    )


def record_overhead(topic: str, key: str | None) -> int:
    """Bytes of a record besides its payload, with every number at its widest."""
    widest = JobRecord(
        "", topic, None, 1000, 10**9, "l", 2**62, 2**62, 2**62, attempt=10**9, snoozes=10**9,
        token="f" * 16, key=key, payload_raw=b"",
    )
    return len(widest.encode())


def _decode_old_dead(job_id: str, d: Any) -> JobRecord:
    """A dead letter in the format before dead letters were job records (one JSON object)."""
    record = JobRecord(
        job_id, d["t"], d["p"], d["pr"], d["m"], "d", d["d"], d["d"], d["e"],
        attempt=d["a"], snoozes=d["sn"], key=d.get("k"),
    )
    record.bury(d["d"], d["kd"], d["r"])
    return record


class DeadRecord:
    """A dead letter as read back: the job record it was, and why it died."""

    __slots__ = ("record",)

    def __init__(self, record: JobRecord) -> None:
        if record.state != "d":
            raise InvalidArgument(f"job {record.job_id} is not a dead letter")
        self.record = record

    @classmethod
    def decode(cls, job_id: str, raw: bytes) -> DeadRecord:
        return cls(JobRecord.decode(job_id, raw))

    def encode(self) -> bytes:
        return self.record.encode()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)

    @property
    def kind(self) -> str:
        return self.record.dead_kind or "failed"

    @property
    def payload(self) -> Any:
        return self.record.payload_or_raw()


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
        # A pointer without a zone lease (every one the runtime writes: it takes zones in
        # the visit's own transaction) formatted directly: the bytes ``dump`` writes for
        # four ints and a null, at a tenth of its cost (callgrind, issue 10: 13.3k ->
        # 4.9k instructions a call; a zone visit decodes and encodes its pointer once each).
        v, tk, le, la = self.vesting, self.token, self.lease_expiry, self.last_active
        if tk is None and type(v) is int and type(le) is int and type(la) is int:
            return b"[%d,null,%d,%d]" % (v, le, la)
        return dump([v, tk, le, la])

    @classmethod
    def decode(cls, raw: bytes) -> PointerRecord:
        # The compiled decoder for the stored shape (9.5k -> 5.4k instructions); anything
        # it refuses (another shape, an integer past 64 bits) is read by ``load`` as before,
        # with its values and its errors.
        try:
            v, tk, le, la = _pointer_decode(raw)
        except msgspec.DecodeError:
            v, tk, le, la = load(raw)
        return cls(v, tk, le, la)


_pointer_decode = msgspec.json.Decoder(tuple[int, str | None, int, int]).decode


@dataclass(frozen=True, slots=True, init=False)
class LeasedJob:
    """What a dequeue hands the runtime: the record as leased, with its token."""

    tenant: str
    record: JobRecord

    def __init__(self, tenant: str, record: JobRecord) -> None:
        # The slots' own setters: the generated frozen __init__ (object.__setattr__ per field)
        # cost twice as much, once for every job leased (issue 10; timeit 0.9 -> 0.45 µs).
        _set_tenant(self, tenant)
        _set_record(self, record)

    @property
    def token(self) -> str:
        assert self.record.token is not None
        return self.record.token


# (they bypass the frozen __setattr__, which refuses every later assignment)
_set_tenant: Callable[[LeasedJob, str], None] = vars(LeasedJob)["tenant"].__set__
_set_record: Callable[[LeasedJob, JobRecord], None] = vars(LeasedJob)["record"].__set__
