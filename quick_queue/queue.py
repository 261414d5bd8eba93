"""``JobQueue``: the facade tying the key layout, the core transactions, the handler registry and
the consumer runtime together."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from quick_queue import read_model
from quick_queue.clock import Clock, SystemClock
from quick_queue.consumer.logsetup import worker_logging
from quick_queue.consumer.processes import run_processes
from quick_queue.consumer.runner import Consumer, Summary
from quick_queue.consumer.signals import install_stop_handlers
from quick_queue.context import QueueContext
from quick_queue.core import admin
from quick_queue.core.enqueue import NewJob, enqueue, enqueue_many
from quick_queue.errors import PayloadError
from quick_queue.events import EventStream
from quick_queue.jobs import Registry, job
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction, as_database, as_transaction
from quick_queue.models import JobInfo, QueueStats, dump, new_job_id, to_us
from quick_queue.settings import MAX_PRIORITY, Settings

T = TypeVar("T")
MAX_TENANT = 1000


def _job_id_for_key(key: str) -> str:
    return "k" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


class JobQueue:
    """A queue stored in ``db`` under ``name``. Several queues may share one database.

    ``jobs`` lists the ``@job`` handler classes this process can run (producers may enqueue
    any topic). ``clock`` is any object with ``now() -> float``; settings are the keyword
    arguments of ``quick_queue.Settings``.
    """

    def __init__(
        self,
        db: Database | Any,
        name: str = "default",
        jobs: Iterable[type] | None = None,
        clock: Clock | None = None,
        *,
        seed: int | None = None,
        **settings: Any,
    ) -> None:
        database = as_database(db)
        if database is None:
            raise TypeError(f"JobQueue needs a database from quick_queue.open(), not {db!r}")
        self.context = QueueContext(
            database, name, Settings.build(**settings), clock or SystemClock(),
            Registry(list(jobs or [])), seed,
        )
        self._consumer: Consumer | None = None

    @classmethod
    def _of(cls, context: QueueContext) -> JobQueue:
        queue = cls.__new__(cls)
        queue.context = context
        queue._consumer = None
        return queue

    def with_db(self, db: Database) -> JobQueue:
        """This queue (name, settings, handlers, clock, seed) on another connection ``db``:
        for a process of its own, or a worker pointed at another URL."""
        database = as_database(db)
        if database is None:
            raise TypeError(f"with_db needs a database from quick_queue.open(), not {db!r}")
        return JobQueue._of(self.context.with_db(database))

    @property
    def events(self) -> EventStream:
        """The queue's event stream (``quick_queue.events``): ``queue.events.subscribe(fn)``
        calls ``fn(event)`` for every job event of this process's consumers of this queue."""
        return self.context.events

    # The facade reads through its context: one place holds each of these.
    @property
    def db(self) -> Database:
        return self.context.db

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def layout(self) -> Layout:
        return self.context.layout

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def registry(self) -> Registry:
        return self.context.registry

    def __repr__(self) -> str:
        return f"<JobQueue {self.name!r} on {self.db.url or self.db!r}>"

    # -- handlers ---------------------------------------------------------------------------
    def register(self, handler: type[T]) -> type[T]:
        """Add a ``@job`` class to the handlers this queue runs; returns it (decorator-friendly)."""
        self.registry.register(handler)
        return handler

    def job(self, **options: Any) -> Callable[[type[T]], type[T]]:
        """``@queue.job(topic=...)``: ``@quick_queue.job`` plus ``register``."""
        decorate = job(**options)

        def both(cls: type[T]) -> type[T]:
            return self.register(decorate(cls))

        return both

    # -- producing --------------------------------------------------------------------------
    def _new_job(
        self,
        tenant: str,
        topic: str,
        payload: Any,
        now: float,
        in_: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        key: str | None = None,
    ) -> NewJob:
        if not isinstance(tenant, str) or not tenant:
            raise ValueError("tenant must be a non-empty string")
        if len(tenant) > MAX_TENANT:
            raise ValueError(f"tenant is longer than {MAX_TENANT} characters")
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        spec = self.registry.get(topic)
        if spec is not None:
            try:
                stored = spec.validate_payload(payload if payload is not None else {})
            except ValueError as error:
                raise PayloadError(str(error)) from None
        else:
            stored = payload.model_dump(mode="json") if hasattr(payload, "model_dump") else payload
        try:
            payload_raw = dump(stored)
        except (TypeError, ValueError) as error:
            raise PayloadError(
                f"payload for topic {topic!r} is not JSON-serialisable: {error}"
            ) from None
        if in_ is not None and at is not None:
            raise ValueError("give in_ or at, not both")
        due = now
        if in_ is not None:
            seconds = in_.total_seconds() if isinstance(in_, timedelta) else in_
            if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < 0:
                raise ValueError(f"in_ must be seconds >= 0 or a timedelta, got {in_!r}")
            due = now + seconds
        elif at is not None:
            if not isinstance(at, datetime) or at.tzinfo is None:
                raise ValueError("at must be a timezone-aware datetime")
            due = at.timestamp()
        if priority is None:
            priority = spec.priority if spec and spec.priority is not None else (
                self.settings.default_priority
            )
        if isinstance(priority, bool) or not isinstance(priority, int) or not (
            0 <= priority <= MAX_PRIORITY
        ):
            raise ValueError(f"priority must be an integer in 0..{MAX_PRIORITY}, got {priority!r}")
        if max_retries is None:
            max_retries = spec.max_retries if spec and spec.max_retries is not None else (
                self.settings.max_retries
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError("key must be a non-empty string")
        job_id = _job_id_for_key(key) if key is not None else new_job_id()
        return NewJob(tenant, job_id, topic, payload_raw, priority, max_retries, to_us(due), key)

    def enqueue(
        self,
        tenant: str,
        topic: str,
        payload: Any = None,
        *,
        tr: Transaction | Any = None,
        in_: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        key: str | None = None,
    ) -> str:
        """Add a job for ``tenant``; returns its id. With ``tr`` the job is written in that
        transaction (it commits with the caller's writes, or not at all)."""
        now = self.clock.now()
        new = self._new_job(tenant, topic, payload, now, in_, at, priority, max_retries, key)
        slack = to_us(self.settings.pointer_slack)
        return self._in_transaction(tr, lambda t: enqueue(t, self.layout, new, to_us(now), slack))

    def enqueue_many(
        self, jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, tr: Transaction | Any = None
    ) -> list[str]:
        """Enqueue several jobs in one transaction (all or none). Each is a dict with the
        arguments of ``enqueue`` (``tenant``, ``topic``, ``payload``, ``in_``, ...) or a
        ``(tenant, topic, payload)`` tuple."""
        now = self.clock.now()
        news = []
        for item in jobs:
            if isinstance(item, tuple):
                news.append(self._new_job(*item, now=now) if len(item) == 3 else
                            self._bad_item(item))
            elif isinstance(item, Mapping):
                unknown = set(item) - {"tenant", "topic", "payload", "in_", "at", "priority",
                                       "max_retries", "key"}
                if unknown:
                    raise ValueError(f"unknown enqueue field(s): {', '.join(sorted(unknown))}")
                news.append(self._new_job(now=now, **item))
            else:
                self._bad_item(item)
        slack = to_us(self.settings.pointer_slack)
        now_us = to_us(now)

        return self._in_transaction(
            tr, lambda t: enqueue_many(t, self.layout, news, now_us, slack)
        )

    @staticmethod
    def _bad_item(item: object) -> Any:
        raise ValueError(
            f"enqueue_many takes dicts or (tenant, topic, payload) tuples, not {item!r:.80}"
        )

    def _in_transaction(self, tr: Any, fn: Callable[[Transaction], T]) -> T:
        if tr is None:
            return self.db.transact(fn)
        transaction = as_transaction(tr)
        if transaction is None:
            raise TypeError(f"tr must be a transaction, not {type(tr).__name__}")
        return fn(transaction)

    # -- consuming --------------------------------------------------------------------------
    def drain(self, concurrency: int = 4, timeout: float | None = None) -> Summary:
        """Run every job that is due now (and any that become due while draining), then return
        what was done."""
        consumer = Consumer(self.context, concurrency, until_idle=True)
        return consumer.run(timeout=timeout)

    def run(
        self, concurrency: int = 16, processes: int = 1, *, log: bool | None = None
    ) -> Summary | None:
        """Consume until SIGINT/SIGTERM (or ``stop()``), then shut down gracefully: no new
        leases, running jobs get ``shutdown_grace`` seconds, unfinished leases are released.

        ``log``: one line per job state change on stderr, as ``quick-queue worker`` prints.
        By default (None) only when the application has not configured logging itself (no
        handler on the root or ``quick_queue`` loggers); True always, False never. The lines
        come from the ``quick_queue.worker`` logger, so an application's own setup decides
        where they go. A second SIGINT/SIGTERM exits at once (the leases of running jobs
        then expire and the jobs run again elsewhere)."""
        if processes < 1 or concurrency < 1:
            raise ValueError("processes and concurrency must be >= 1")
        with worker_logging(log, processes):
            if processes > 1:
                run_processes(self.context, concurrency, processes)
                return None
            consumer = self._consumer = Consumer(self.context, concurrency)
            restore = install_stop_handlers(consumer.stop)
            try:
                return consumer.run()
            finally:
                restore()
                self._consumer = None

    def stop(self) -> None:
        """Ask a running ``run()`` to shut down gracefully (from another thread)."""
        if self._consumer is not None:
            self._consumer.stop()

    # -- looking and fixing -----------------------------------------------------------------
    def get_job(self, tenant: str, job_id: str) -> JobInfo | None:
        return self.db.transact(admin.lookup, self.layout, tenant, job_id)

    def cancel(self, tenant: str, job_id: str) -> bool:
        return self.db.transact(admin.cancel, self.layout, tenant, job_id)

    def dead_letters(self, tenant: str | None = None, limit: int = 100) -> list[JobInfo]:
        rows = self.db.transact(admin.dead_page, self.layout, tenant, None, limit)
        return [info for _, info in rows]

    def retry_dead(self, tenant: str, job_id: str) -> bool:
        now = to_us(self.clock.now())
        return self.db.transact(
            admin.retry_dead, self.layout, tenant, job_id, now, to_us(self.settings.pointer_slack)
        )

    def purge_dead(self, tenant: str | None = None) -> int:
        total = 0
        while True:
            n = self.db.transact(admin.purge_dead_page, self.layout, tenant, 1000)
            total += n
            if n < 1000:
                return total

    def stats(self) -> QueueStats:
        """Counts read from the store, the same numbers ``quick-queue inspect`` shows (one read
        model, ``quick_queue.read_model``; chunked reads, so not one consistent snapshot)."""
        return read_model.queue_stats(self)

