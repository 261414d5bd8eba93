"""What a running handler is handed besides its payload: ``JobMeta`` (who, which attempt,
the lease, the cancel flag, the transaction of a transactional job, progress reports)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from quick_queue.errors import InvalidArgument
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KVError
from quick_queue.models import JobRecord, dump

log = logging.getLogger("quick_queue.worker")
PROGRESS_LIMIT = 4096  # bytes of JSON a report may take (core.progress has the same)
# (tenant, job_id, lease token, value) -> whether the report was stored
ProgressSink = Callable[[str, str, str, Any], bool]

_FLAG_LOCK = threading.Lock()
_NEVER = -math.inf  # (JobMeta._progress_at before the first report)
_new_object = object.__new__


class LeaseFlag:
    """``threading.Event``'s interface (``is_set``, ``wait``, ``set``), with the event made
    only when someone waits: a consumer makes one per job, and almost none is ever waited on.

    No ``__init__``: both fields start as the class's values and are set on the instance
    only when the flag is set or waited on, so making one (once a job) is the bare object
    (issue 10: 0.25 -> 0.07 µs, timeit)."""

    _flag = False
    _event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True  # before reading _event: wait() checks the flag after making it
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        with _FLAG_LOCK:
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._flag:
            event.set()
        return event.wait(timeout)


class JobMeta:
    """What a handler knows about the run: ``tenant``, ``topic``, ``job_id``, ``attempt``
    (1-based), ``max_retries``, ``priority``, ``snoozes``, ``enqueued_at`` and
    ``lease_deadline`` (aware datetimes). ``lease_lost`` is set when the consumer learns its
    lease is gone (expired, or the job timed out or was cancelled): the handler should stop,
    since its completion will be rejected. The worker learns of a ``cancel()`` at its next lease
    extension (every ``extend_every`` seconds, a third of ``item_lease`` by default), not at
    once. ``tr`` is the transaction of a transactional job. ``progress(value)`` reports how
    far the handler got (shown by ``get_job`` as ``progress``)."""

    __slots__ = (
        "_enqueued_us", "_lease_deadline_us", "_progress_at", "_progress_sink", "_token", "attempt",
        "job_id", "lease_lost", "max_retries", "priority", "snoozes", "tenant", "topic", "tr",
    )

    #: Seconds between two progress reports that reach the store (calls in between are
    #: skipped: a handler may report in a tight loop without costing a commit each time).
    progress_interval = 1.0

    def __init__(
        self, tenant: str, topic: str, job_id: str, attempt: int, max_retries: int,
        enqueued_us: int, lease_deadline_us: int, priority: int, snoozes: int = 0,
    ) -> None:
        self.tenant = tenant
        self.topic = topic
        self.job_id = job_id
        self.attempt = attempt
        self.max_retries = max_retries
        self.priority = priority
        self.snoozes = snoozes
        self.tr: Transaction | None = None
        self.lease_lost = LeaseFlag()
        self._enqueued_us = enqueued_us
        self._lease_deadline_us = lease_deadline_us
        self._progress_sink: ProgressSink | None = None
        self._token = ""
        self._progress_at = -math.inf

    @classmethod
    def of_record(cls, tenant: str, record: JobRecord) -> JobMeta:
        """The meta of a leased job's ``record``: ``__init__``'s fields set on a bare
        instance, one call a job instead of two (the consumer makes one for every job it
        leases; issue 10). A test compares it with ``__init__``'s, slot for slot."""
        meta = _new_object(cls)
        meta.tenant, meta.topic, meta.job_id = tenant, record.topic, record.job_id
        meta.attempt, meta.max_retries = record.attempt, record.max_retries
        meta.priority, meta.snoozes = record.priority, record.snoozes
        meta.tr, meta.lease_lost = None, LeaseFlag()
        meta._enqueued_us, meta._lease_deadline_us = record.enqueued, record.at
        meta._progress_sink, meta._token, meta._progress_at = None, "", _NEVER
        return meta

    def bind_progress(self, sink: ProgressSink, token: str) -> None:
        """Where ``progress`` reports go: ``sink(tenant, job_id, token, value)`` (the consumer
        binds one ``progress.ProgressWriter`` of its queue and the job's lease token; two
        assignments, so binding costs the hot path nothing measurable)."""
        self._progress_sink, self._token = sink, token

    def progress(self, value: Any, *, force: bool = False) -> bool:
        """Report progress: any JSON value (a number, a string, a small dict such as
        ``{"done": 40, "of": 100}``) or pydantic model, at most 4 kB as JSON. ``get_job``
        (and ``quick-queue inspect job``) shows the last one while the job lives.

        Throttled: at most one report per ``progress_interval`` seconds reaches the store
        (``force=True`` writes this one anyway, e.g. the last), each one commit with relaxed
        durability (a power loss may undo a report, never a job). Returns whether this report
        was written: False when throttled, when the lease is gone, in a transactional handler
        (a second transaction on the job would conflict with ``meta.tr``), or when the worker
        reports nowhere. A store error is not raised: progress never fails a job.
        ``InvalidArgument`` for a value that is not JSON or is too large."""
        value = progress_value(value)
        return self._take_turn(force) and self._write(value)

    async def progress_async(self, value: Any, *, force: bool = False) -> bool:
        """``progress`` for an ``async def perform``: the report's commit runs in a worker
        thread, so the event loop (and the worker's other async jobs) never waits for it."""
        value = progress_value(value)
        return self._take_turn(force) and await asyncio.to_thread(self._write, value)

    def _take_turn(self, force: bool) -> bool:
        """Whether a report may be written now (and then the throttle starts again)."""
        if self._progress_sink is None or self.tr is not None:
            return False
        now = time.monotonic()
        if not force and now - self._progress_at < self.progress_interval:
            return False
        self._progress_at = now
        return True

    def _write(self, value: Any) -> bool:
        sink = self._progress_sink
        assert sink is not None
        try:
            return sink(self.tenant, self.job_id, self._token, value)
        except KVError:
            log.debug("progress report of %s not written", self.job_id, exc_info=True)
            return False

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self._enqueued_us / 1e6, tz=UTC)

    @property
    def lease_deadline(self) -> datetime:
        return datetime.fromtimestamp(self._lease_deadline_us / 1e6, tz=UTC)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.max_retries

    def __repr__(self) -> str:
        return (f"JobMeta(tenant={self.tenant!r}, topic={self.topic!r}, job_id={self.job_id!r}, "
                f"attempt={self.attempt}, max_retries={self.max_retries})")


def progress_value(value: Any) -> Any:
    """``value`` as the JSON data a progress report stores; InvalidArgument otherwise."""
    if hasattr(value, "model_dump"):  # a pydantic model
        value = value.model_dump(mode="json")
    try:
        raw = dump(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"meta.progress() takes JSON data (numbers, strings, lists, dicts), not "
            f"{type(value).__name__} ({error})"
        ) from None
    if len(raw) > PROGRESS_LIMIT:
        raise InvalidArgument(
            f"meta.progress() report of {len(raw):,} bytes as JSON; at most "
            f"{PROGRESS_LIMIT:,}: report a summary"
        )
    return value
