"""The producing half of ``JobQueue``: ``enqueue`` and ``enqueue_many`` (typed by handler class
or by topic string), and their awaitable forms for asyncio code.

The awaitable forms never block the event loop on a commit: the transaction, whose commit
waits for the disk (or the cluster), runs in a worker thread (``asyncio.to_thread``), so the
loop keeps serving while it lands, and concurrent ones share the engine's group commit. With
``tr=`` the job is only written into the caller's transaction, which does not commit here:
that is done on the loop (no I/O of its own beyond the reads ``enqueue`` makes), and
``transact_async`` is the awaitable way to run such a transaction.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

from quick_queue.context import QueueContext
from quick_queue.core.dependencies import enqueue_after, enqueue_many_after
from quick_queue.core.enqueue import enqueue, enqueue_many
from quick_queue.errors import ArgumentTypeError
from quick_queue.kv.api import Transaction, as_transaction
from quick_queue.meta import JobMeta
from quick_queue.models import to_us
from quick_queue.producer import Producer
from quick_queue.producer_after import Wait, check_rule, parents_of

T = TypeVar("T")
P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)

# A raw FoundationDB transaction (``fdb.Transaction``): the binding is untyped, so ``object``.
RawTransaction = object


class Performs(Protocol[P_contra]):
    """A handler class whose ``perform`` takes a payload of type ``P_contra``: what lets
    ``enqueue(tenant, SendEmail, payload)`` check the payload's type."""

    def perform(self, payload: P_contra, meta: JobMeta, /) -> object: ...


class Producing:
    """``JobQueue``'s producing methods; they read only ``self.context``."""

    context: QueueContext
    _kept_producer: Producer | None = None

    def _producer(self) -> Producer:
        """The queue's Producer, kept while its registry, settings and id maker are the
        context's (it keeps each topic's checks: issue 10)."""
        context = self.context
        producer = self._kept_producer
        if (
            producer is None or producer.registry is not context.registry
            or producer.settings is not context.settings
            or producer.new_job_id is not context.new_job_id
        ):
            producer = Producer(context.registry, context.settings, context.new_job_id)
            self._kept_producer = producer
        return producer

    @overload
    def enqueue(
        self, tenant: str, topic: type[Performs[P]], payload: P, *,
        tr: Transaction | RawTransaction | None = None, in_: float | timedelta | None = None,
        at: datetime | None = None, priority: int | None = None,
        max_retries: int | None = None, key: str | None = None,
        after: Iterable[str | tuple[str, str]] | None = None, on_parent_failure: str = "dead",
    ) -> str: ...

    @overload
    def enqueue(
        self, tenant: str, topic: str, payload: Any = None, *,
        tr: Transaction | RawTransaction | None = None, in_: float | timedelta | None = None,
        at: datetime | None = None, priority: int | None = None,
        max_retries: int | None = None, key: str | None = None,
        after: Iterable[str | tuple[str, str]] | None = None, on_parent_failure: str = "dead",
    ) -> str: ...

    def enqueue(
        self,
        tenant: str,
        topic: str | type[Any],
        payload: Any = None,
        *,
        tr: Transaction | RawTransaction | None = None,
        in_: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        key: str | None = None,
        after: Iterable[str | tuple[str, str]] | None = None,
        on_parent_failure: str = "dead",
    ) -> str:
        """Add a job for ``tenant`` (one zone per tenant: tenants are served fairly); returns
        its id.

        ``topic``: the topic string, or the ``@job`` handler class itself (typed: mypy then
        checks ``payload`` against the type its ``perform`` takes, and the handler's options
        apply even where this queue did not register it).

        ``payload``: JSON data (dicts, lists, strings, finite numbers, booleans, None) or a
        pydantic model; validated by the topic's ``Payload`` model when this queue has the
        handler. A job is one stored value: the payload may be at most about 99.5 kB as JSON
        (``PayloadError`` names the exact limit); store large data elsewhere and pass a
        reference.

        When it runs: now by default; ``in_`` seconds (or a ``timedelta``) from now, or at the
        aware ``datetime`` ``at`` (not both; at most a century ahead). A time in the past means
        now.

        ``priority``: 0..1000, lower runs first; among equal priorities, first due runs first.
        It orders a tenant's ready jobs only (tenants are picked fairly, not by priority) and
        is fixed here: without ``priority=`` the job gets the handler's ``@job(priority=...)``
        if this queue registered the handler, else the ``default_priority`` setting (100).

        ``max_retries``: retries after the first run. Without it, the handler's
        ``@job(max_retries=...)`` applies: this queue's handler if it has one, else the
        handler of the worker that runs the job (else that worker's ``max_retries`` setting).

        ``key``: makes the enqueue idempotent: the job id is derived from the key, and while a
        job with that key is live or dead-lettered in this tenant's zone, enqueueing the key
        again returns the same id and writes nothing. Keys are unique per tenant only.

        ``tr``: write the job in the caller's transaction (ours or a raw FoundationDB one): it
        commits with the caller's writes or not at all. If that commit fails with "commit
        unknown result" (1021) and the caller's retry loop runs the function again, the retry
        calls ``enqueue`` again with a fresh id: a first attempt that did commit leaves a
        second job. Pass ``key=`` to make the retry find the first job instead.

        ``after``: job ids (of ``tenant``, or ``(tenant, job_id)`` pairs of other tenants)
        this job waits for: it becomes due only once every one of them has completed (a job
        that no longer exists counts as completed), in its place in line as of now. If one
        of them dies (a dead letter), ``on_parent_failure`` decides: ``"dead"`` (default)
        makes this job a dead letter of kind ``parent_failed`` naming that job, ``"run"``
        runs it anyway. See ``quick_queue.core.dependencies``.

        Raises ``InvalidArgument`` (a ``ValueError``) for a bad tenant, topic, priority,
        ``in_``/``at``, ``max_retries`` or key, ``PayloadError`` (also one) for a payload that
        fails its model, is not JSON or is too large, and ``KVError`` if the store refuses.
        Warns ``UnknownTopicWarning`` when this queue has handlers but none for ``topic``.
        """
        now = self.context.clock.now()
        new = self._producer().new_job(
            tenant, topic, payload, now, in_, at, priority, max_retries, key
        )
        slack = to_us(self.context.settings.pointer_slack)
        now_us = to_us(now)
        if on_parent_failure != "dead":  # (refused misspelt even without after=)
            check_rule(on_parent_failure)
        parents = None if after is None else parents_of(tenant, after, on_parent_failure)

        def write(t: Transaction) -> str:
            if parents:
                job_id = enqueue_after(t, self.context.layout, new, parents, on_parent_failure,
                                       now_us, slack)
            else:
                job_id = enqueue(t, self.context.layout, new, now_us, slack)
            self.context.db.notify_change(t)  # wakes idle consumers where the engine needs telling
            return job_id

        return self._in_transaction(tr, write)

    def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]],
        *,
        tr: Transaction | RawTransaction | None = None,
    ) -> list[str]:
        """Enqueue several jobs in one transaction (all or none); their ids, in order. Each is a
        dict with the keyword arguments of ``enqueue`` (``tenant``, ``topic``, ``payload``,
        ``in_``, ``at``, ``priority``, ``max_retries``, ``key``, ``after``,
        ``on_parent_failure``) or a ``(tenant, topic, payload)`` tuple. Every job is checked
        before anything is written: one bad item raises what ``enqueue`` would (for ``after``,
        naming the item: "enqueue_many item 3: ...") and nothing is enqueued. One call is one
        transaction (at most 9 MB of payload; split larger batches). With ``tr``, the 1021
        caveat of ``enqueue`` applies: give each job a ``key`` to make a retried transaction
        find its jobs.

        An item's ``after`` may also name an earlier item of the same call by its index (an
        int: ``0`` is the first item), since its id is only returned afterwards: a fan-out and
        its join in one batch::

            queue.enqueue_many([
                {"tenant": "acme", "topic": "fetch", "payload": {"url": a}},          # 0
                {"tenant": "acme", "topic": "fetch", "payload": {"url": b}},          # 1
                {"tenant": "acme", "topic": "report", "payload": {}, "after": [0, 1]},
            ])

        An index must be of an item before this one (so no cycle can be made), and the items
        behave as if enqueued one by one in their order: a parent earlier in the batch is
        waited for, one later in it counts as not there yet (completed), and a keyed job given
        twice is written once, as its first item says."""
        now = self.context.clock.now()
        waits: dict[int, Wait] = {}  # the items with after=, by index: none on the fast path
        news = self._producer().new_jobs(jobs, now, waits)
        slack = to_us(self.context.settings.pointer_slack)
        now_us = to_us(now)
        def write(t: Transaction) -> list[str]:
            if waits:
                ids = enqueue_many_after(t, self.context.layout, news, waits, now_us, slack)
            else:
                ids = enqueue_many(t, self.context.layout, news, now_us, slack)
            self.context.db.notify_change(t)
            return ids

        return self._in_transaction(tr, write)

    def _in_transaction(
        self, tr: Transaction | RawTransaction | None, fn: Callable[[Transaction], T]
    ) -> T:
        if tr is None:
            return self.context.db.transact(fn)
        transaction = as_transaction(tr)
        if transaction is None:
            raise ArgumentTypeError(
                f"tr must be a transaction (from db.transact, db.create_transaction or a "
                f"FoundationDB transaction), not {type(tr).__name__}"
            )
        return fn(transaction)

    # -- asyncio ----------------------------------------------------------------------------
    @overload
    async def enqueue_async(
        self, tenant: str, topic: type[Performs[P]], payload: P, *,
        tr: Transaction | RawTransaction | None = None, in_: float | timedelta | None = None,
        at: datetime | None = None, priority: int | None = None,
        max_retries: int | None = None, key: str | None = None,
        after: Iterable[str | tuple[str, str]] | None = None, on_parent_failure: str = "dead",
    ) -> str: ...

    @overload
    async def enqueue_async(
        self, tenant: str, topic: str, payload: Any = None, *,
        tr: Transaction | RawTransaction | None = None, in_: float | timedelta | None = None,
        at: datetime | None = None, priority: int | None = None,
        max_retries: int | None = None, key: str | None = None,
        after: Iterable[str | tuple[str, str]] | None = None, on_parent_failure: str = "dead",
    ) -> str: ...

    async def enqueue_async(
        self, tenant: str, topic: str | type[Any], payload: Any = None, *,
        tr: Transaction | RawTransaction | None = None, **options: Any,
    ) -> str:
        """``enqueue`` for asyncio code: ``await queue.enqueue_async(...)``. The commit runs
        in a worker thread, so the event loop keeps running while it waits for the disk.

        With ``tr=`` nothing commits here: the job is written into the caller's transaction
        in the calling thread (a transaction belongs to the thread using it), as ``enqueue``
        does; run such a transaction with ``await queue.transact_async(fn)``."""
        call = functools.partial(self.enqueue, tenant, topic, payload, tr=tr, **options)
        if tr is not None:
            return call()
        return await asyncio.to_thread(call)

    async def enqueue_many_async(
        self, jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]], *,
        tr: Transaction | RawTransaction | None = None,
    ) -> list[str]:
        """``enqueue_many`` for asyncio code (one transaction, committed in a worker thread;
        with ``tr=``, written into the caller's transaction in the calling thread)."""
        items = list(jobs)  # an iterator is consumed here, not in another thread
        if tr is not None:
            return self.enqueue_many(items, tr=tr)
        return await asyncio.to_thread(self.enqueue_many, items)

    async def transact_async(
        self, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``db.transact(fn, *args, **kwargs)`` for asyncio code: ``fn(tr, ...)`` is a plain
        function, run in a worker thread with the usual retry loop, and may ``enqueue(...,
        tr=tr)`` beside its own writes; all of it commits together, off the event loop::

            def place_order(tr, order):
                tr.set(order_key, order_bytes)
                return queue.enqueue(shop, "email:send", {...}, tr=tr)

            job_id = await queue.transact_async(place_order, order)
        """
        if inspect.iscoroutinefunction(fn):
            raise ArgumentTypeError(
                "transact_async runs a plain function fn(tr, ...) in a worker thread (it may "
                "be retried), not a coroutine function"
            )
        def run() -> T:
            return self.context.db.transact(lambda tr: fn(tr, *args, **kwargs))

        return await asyncio.to_thread(run)
