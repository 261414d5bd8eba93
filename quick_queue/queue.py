"""``JobQueue``: the facade tying the key layout, the core transactions, the handler registry and
the consumer runtime together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from quick_queue import flow, read_model, results
from quick_queue.clock import Clock, StoreClock
from quick_queue.consumer.logsetup import worker_logging
from quick_queue.consumer.processes import run_processes
from quick_queue.consumer.runner import Consumer, Summary
from quick_queue.consumer.signals import install_stop_handlers
from quick_queue.context import QueueContext
from quick_queue.core import admin
from quick_queue.errors import ArgumentTypeError, InvalidArgument
from quick_queue.events import EventStream
from quick_queue.jobs import Registry, job
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, as_database
from quick_queue.models import JobInfo, QueueStats, to_us
from quick_queue.producer import job_id_for_key
from quick_queue.producing import Producing
from quick_queue.settings import Settings

T = TypeVar("T")


class JobQueue(Producing):
    """A queue stored in ``db`` under ``name``. Several queues may share one database.

    ``jobs`` lists the ``@job`` handler classes this process can run (producers may enqueue
    any topic). ``clock`` is any object with ``now() -> float``; settings are the keyword
    arguments of ``quick_queue.Settings``.

    Time: workers lease jobs on the store's time (``db.store_time()``: the engine's clock, or
    FoundationDB's read version), never on their host's wall clock. ``clock`` defaults to that
    same time, so ``in_=`` and the views agree with the workers. A test that passes a
    ``ManualClock`` here must give it to the database too (``qq.open(url, clock=clock)``),
    or jobs come due on one clock and are leased on another.
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
            raise ArgumentTypeError(
                f"JobQueue needs a database from quick_queue.open(), not {db!r}"
            )
        self.context = QueueContext(
            database, name, Settings.build(**settings), clock or StoreClock(database),
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
            raise ArgumentTypeError(
                f"with_db needs a database from quick_queue.open(), not {db!r}"
            )
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

    # -- consuming --------------------------------------------------------------------------
    def drain(self, concurrency: int = 16, timeout: float | None = None) -> Summary:
        """Run every job that is due now (and any that become due while draining), then return
        what was done. ``concurrency`` defaults to ``run()``'s."""
        consumer = Consumer(self.context, concurrency, until_idle=True)
        return consumer.run(timeout=timeout)

    def run(
        self, concurrency: int = 16, processes: int = 1, *, log: bool | None = None
    ) -> Summary:
        """Consume until SIGINT/SIGTERM (or ``stop()``), then shut down gracefully: no new
        leases, running jobs get ``shutdown_grace`` seconds, unfinished leases are released.

        ``log``: ``True`` prints one line per job state change on stderr, as ``quick-queue
        worker`` does; the default (None) prints only warnings (lost leases, outcomes that
        could not be applied, jobs dead without running, storage trouble), and only when the
        application has not configured logging itself (no handler on the root or
        ``quick_queue`` loggers); ``False`` adds nothing. The lines come from the
        ``quick_queue.worker`` logger, so an application's own setup decides where they go.
        A second SIGINT/SIGTERM exits at once (the leases of running jobs then expire and
        the jobs run again elsewhere). With ``processes > 1`` the summary is the sum of the
        processes' own."""
        if processes < 1 or concurrency < 1:
            raise InvalidArgument("run(): processes and concurrency must be >= 1")
        with worker_logging(log, processes):
            if processes > 1:
                return run_processes(self.context, concurrency, processes)
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
    def get_job(
        self, tenant: str, job_id: str | None = None, *, key: str | None = None
    ) -> JobInfo | None:
        """The job ``job_id`` of ``tenant`` (or the job enqueued with ``key=``) as it is now:
        live, dead letter, or, for a job that keeps its result (``keep_result``), finished
        (state completed, dead, discarded or cancelled, with its result and timings) until
        its entry expires. None once it is gone (a job that keeps nothing leaves nothing
        behind). A stored record that cannot be decoded comes back with state "unreadable"
        and its raw bytes as the payload, instead of an error."""
        job_id = self._id_of(job_id, key)
        now = to_us(self.clock.now())
        return self.db.transact(
            lambda tr: admin.lookup(tr.snapshot, self.layout, tenant, job_id, now,
                                    self._retries_of)
        )

    def _id_of(self, job_id: str | None, key: str | None) -> str:
        if (job_id is None) == (key is None):
            raise InvalidArgument("give a job id or key=..., exactly one of them")
        if key is not None:
            if not isinstance(key, str) or not key:
                raise InvalidArgument(f"key must be a non-empty string, got {key!r}")
            return job_id_for_key(key)
        assert job_id is not None
        return job_id

    def result(
        self, tenant: str, job_id: str | None = None, *, key: str | None = None,
        wait: float | timedelta | None = 0.0,
    ) -> Any:
        """The value the job returned, for a job that keeps its result (``@job(keep_result=
        ...)`` or the queue's ``keep_result`` setting), waiting up to ``wait`` seconds
        (None: forever) for it to finish. The wait wakes when a commit lands, not by polling.

        Raises ``ResultTimeout`` (a ``TimeoutError``) if it has not finished in time,
        ``JobDead``, ``JobDiscarded`` or ``JobCancelled`` (all ``JobFailed``, with ``.job``)
        if it ended without a value, ``ResultNotKept`` if its value could not be kept (not
        JSON, too large), and ``JobNotFound`` if there is no such job (or it finished without
        keeping its result, or the kept result expired)."""
        seconds = results.wait_seconds(wait)
        return results.result(
            self.db, self.layout, lambda: to_us(self.clock.now()), tenant,
            self._id_of(job_id, key), seconds,
        )

    async def result_async(
        self, tenant: str, job_id: str | None = None, *, key: str | None = None,
        wait: float | timedelta | None = 0.0,
    ) -> Any:
        """``result`` for asyncio code: the wait happens in a worker thread, so the event
        loop keeps running meanwhile (same errors as ``result``)."""
        return await asyncio.to_thread(self.result, tenant, job_id, key=key, wait=wait)

    def cancel(self, tenant: str, job_id: str) -> bool:
        """Remove a live job (ready, scheduled or running); False if there is none. A dead
        letter is not touched (use ``purge_dead(tenant, job_id=...)``). A running handler is
        not interrupted: its worker learns of the cancellation at its next lease extension
        (``meta.lease_lost`` is set), and whatever it returns is then ignored. A job whose
        handler here keeps results (``keep_result``) is kept as "cancelled"."""
        return self.db.transact(admin.cancel, self.layout, tenant, job_id, self._keep_of,
                                to_us(self.clock.now()))

    def _keep_of(self, topic: str) -> float:
        spec = self.registry.get(topic)
        default = self.settings.keep_result
        return spec.keep_seconds(default) if spec is not None else default

    def dead_letters(self, tenant: str | None = None, limit: int = 100) -> list[JobInfo]:
        """Up to ``limit`` dead letters, of one tenant or all, in key order: jobs that failed
        ``max_retries + 1`` times, were discarded, snoozed too often, or could not run (unknown
        topic, bad payload, an unreadable record). ``dead_kind`` says which and ``reason``
        why."""
        rows = self.db.transact(
            admin.dead_page, self.layout, tenant, None, limit, self._retries_of
        )
        return [info for _, info in rows]

    def _retries_of(self, topic: str) -> int:
        """The ``max_retries`` this queue's handler for ``topic`` (else its setting) applies
        to a job whose producer fixed none: what ``get_job`` and ``dead_letters`` show."""
        spec = self.registry.get(topic)
        if spec is not None and spec.max_retries is not None:
            return spec.max_retries
        return self.settings.max_retries

    def retry_dead(self, tenant: str, job_id: str) -> bool:
        """Bring dead letter ``job_id`` back as a ready job with a fresh retry budget; False
        if there is no such dead letter. An unreadable record cannot be retried
        (``InvalidArgument``)."""
        now = to_us(self.clock.now())
        return self.db.transact(
            admin.retry_dead, self.layout, tenant, job_id, now, to_us(self.settings.pointer_slack)
        )

    def purge_dead(self, tenant: str | None = None, *, job_id: str | None = None) -> int:
        """Delete dead letters for good; the number deleted. ``purge_dead()`` deletes all,
        ``purge_dead(tenant)`` that tenant's, ``purge_dead(tenant, job_id=...)`` that one
        (0 if it is not a dead letter)."""
        if job_id is not None:
            if tenant is None:
                raise InvalidArgument("purge_dead(job_id=...) needs the job's tenant too")
            return int(self.db.transact(admin.purge_dead_one, self.layout, tenant, job_id))
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


    # -- flow control (quick_queue.flow, issue 13) -------------------------------------------
    def periodic(
        self, name: str, *, cron: str | None = None, every: float | timedelta | None = None,
        tenant: str, topic: str, payload: Any = None, tz: str | None = None,
        missed: str = "skip",
    ) -> flow.Schedule:
        """Enqueue a job for ``tenant``/``topic`` at each tick of ``cron`` (in ``tz``, UTC by
        default) or ``every`` seconds (or a timedelta). Stored in the queue, so every worker
        that runs it ticks it, each tick is enqueued exactly once however many run, and
        calling this again with the same definition changes nothing. ``missed``: ticks that
        passed while no worker ran are dropped ("skip") or run as one job ("run_once")."""
        return flow.define(self.context, name, tenant=tenant, topic=topic, payload=payload,
                           cron=cron, every=every, tz=tz, missed=missed)

    def remove_periodic(self, name: str) -> bool:
        """Stop schedule ``name`` (workers notice within a scan interval); False if unknown."""
        return flow.remove(self.context, name)

    def schedules(self) -> list[flow.ScheduleInfo]:
        return flow.schedules(self.context)

    def pause(self, *, topic: str | None = None, tenant: str | None = None) -> bool:
        """Stop starting jobs of ``tenant`` (its jobs stay queued; attempts in flight finish;
        workers notice within one scan interval). False if it already was paused."""
        return flow.pause(self.context, topic=topic, tenant=tenant)

    def resume(self, *, topic: str | None = None, tenant: str | None = None) -> bool:
        return flow.resume(self.context, topic=topic, tenant=tenant)

    def paused(self) -> dict[str, list[str]]:
        """What is paused: ``{"tenant": [...], "topic": [...]}``."""
        return flow.paused(self.context)

    def set_weight(self, tenant: str, weight: float) -> None:
        """Give ``tenant`` a weight (default 1; 0.01 to 1000): under contention its zone is
        visited and served in proportion to it (3 against 1 gets three quarters of the jobs
        started); a tenant alone still gets every worker. Workers follow within a scan
        interval."""
        flow.set_weight(self.context, tenant, weight)

    def set_max_running(self, topic: str, limit: int | None) -> None:
        """At most ``limit`` attempts of ``topic`` run at once across every worker process
        and machine (None removes the cap). Held in the store as leases: a killed worker's
        slots come back when its leases run out. A job finding no free slot is handed back
        unrun (no attempt spent) and looks again a moment later."""
        flow.set_max_running(self.context, topic, limit)

    def set_rate_limit(self, topic: str, rate: str | None) -> None:
        """At most ``rate`` ("100/s", "30/min", "5/h") jobs of ``topic`` leased across every
        worker, evenly spaced rather than in bursts at window edges (None removes it). A job
        whose turn has not come is handed back unrun, with no attempt spent."""
        flow.set_rate_limit(self.context, topic, rate)

    def set_tenant_max_running(self, tenant: str, limit: int | None) -> None:
        """At most ``limit`` attempts of ``tenant``'s jobs (any topic) run at once across
        every worker (None removes the cap); a job waiting for a slot spends no attempt."""
        flow.set_tenant_max_running(self.context, tenant, limit)

    def set_tenant_rate_limit(self, tenant: str, rate: str | None) -> None:
        """At most ``rate`` ("100/s", "30/min", "5/h") of ``tenant``'s jobs leased across
        every worker, evenly spaced (None removes it)."""
        flow.set_tenant_rate_limit(self.context, tenant, rate)
