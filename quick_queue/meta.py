"""What a running handler is handed besides its payload: ``JobMeta`` (who, which attempt,
the lease, the cancel flag, the transaction of a transactional job, progress reports)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from quick_queue.kv.api import Transaction

_FLAG_LOCK = threading.Lock()


class LeaseFlag:
    """``threading.Event``'s interface (``is_set``, ``wait``, ``set``), with the event made
    only when someone waits: a consumer makes one per job, and almost none is ever waited on."""

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

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
    once. ``tr`` is the transaction of a transactional job."""

    __slots__ = (
        "_enqueued_us", "_lease_deadline_us", "attempt", "job_id", "lease_lost",
        "max_retries", "priority", "snoozes", "tenant", "topic", "tr",
    )

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
