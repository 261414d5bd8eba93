"""The producer's side of a queue: turning ``enqueue`` arguments into a checked ``NewJob``.

Every check a user's mistake can fail happens here, before any transaction: tenant, topic,
payload (its topic's model, JSON, the size limit), ``in_``/``at``, priority, ``max_retries`` and
``key``. Each failure is an ``InvalidArgument`` (``PayloadError`` for the payload) whose message
says what to pass instead; nothing here touches the store.
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from quick_queue import models, tracing
from quick_queue.core.enqueue import NewJob
from quick_queue.errors import InvalidArgument, PayloadError, UnknownTopicWarning
from quick_queue.jobs import JobSpec, Registry, spec_of
from quick_queue.models import RUNTIME_ROOM, VALUE_LIMIT, dump, record_overhead, to_us
from quick_queue.producer_after import Wait, check_rule, parents_of
from quick_queue.settings import MAX_PRIORITY, Settings

MAX_TENANT = 1000  # characters
MAX_TOPIC = 1000
MAX_KEY = 1000
# Latest due time a job may have: far enough for any schedule, near enough that the time in
# microseconds stays a key element (in_=float("inf") is refused, not an OverflowError).
MAX_DELAY = 100 * 366 * 86400.0  # seconds, a century
# One enqueue_many is one transaction, and a transaction holds at most 10 MB (FoundationDB's
# limit, which the embedded engine keeps too); keys, indexes and pointers need some of it.
BATCH_LIMIT = 9_000_000  # bytes of payload
FIELDS = frozenset({"tenant", "topic", "payload", "in_", "at", "priority", "max_retries", "key"})
# an enqueue_many item's fields: enqueue's keyword arguments (after= may name earlier items)
ITEM_FIELDS = FIELDS | {"after", "on_parent_failure"}
_PLAIN_FIELDS = frozenset({"tenant", "topic", "payload"})  # the items Producer._plain_job takes
# A topic's spec, priority, max_retries and the payload length that needs no exact size check.
_Plan = tuple[JobSpec | None, int, int | None, int]
MAX_PLANS = 10_000  # topics whose plan a Producer keeps


def job_id_for_key(key: str) -> str:
    """The job id of ``key``: the same key gives the same id, so a keyed enqueue is unique
    per tenant (two tenants may each hold a job with one key)."""
    return "k" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


class Producer:
    """Builds checked jobs for one queue: its handler registry and settings, and the maker of
    job ids (``models.new_job_id`` unless a seeded one is given)."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        new_job_id: Callable[[], str] = models.new_job_id,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.new_job_id = new_job_id
        # What a topic's plain jobs share (_plan), kept while the registry is unchanged: a
        # queue keeps its Producer, so enqueue checks a topic's options once, not per call.
        self._plans: dict[str, _Plan | None] = {}
        self._plans_version = registry.version

    def new_job(
        self,
        tenant: str,
        topic: str | type,
        payload: Any,
        now: float,
        in_: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        max_retries: int | None = None,
        key: str | None = None,
    ) -> NewJob:
        """One job, checked; ``now`` is the producer's clock in seconds. ``topic`` is a topic
        string or a ``@job`` handler class (its own options apply then, registered or not)."""
        if (
            in_ is None and at is None and priority is None and max_retries is None
            and key is None and tracing.on_enqueue is None and type(topic) is str
        ):  # enqueue(tenant, topic, payload): the checks enqueue_many makes per item
            job = self._plain_job(tenant, topic, payload, to_us(now), None)
            if job is not None:
                return job
        _check_name("tenant", tenant, MAX_TENANT)
        if isinstance(topic, type):
            spec: JobSpec | None = spec_of(topic)
            assert spec is not None
            topic = spec.topic
        else:
            spec = None
        _check_name("topic", topic, MAX_TOPIC)
        if spec is None:
            spec = self.registry.get(topic)
        if key is not None:
            _check_name("key", key, MAX_KEY)
        payload_raw = _encode_payload(topic, payload, spec)
        due = _due(now, in_, at)
        if priority is None:
            priority = spec.priority if spec and spec.priority is not None else (
                self.settings.default_priority
            )
        _check_priority(priority)
        if max_retries is None and spec is not None:
            max_retries = spec.max_retries  # still None: the worker's handler decides
        if max_retries is not None:
            _check_max_retries(max_retries)
        _check_size(topic, key, payload_raw)
        if spec is None:
            self._warn_unknown(topic)  # only once the job is known to be valid
        job_id = job_id_for_key(key) if key is not None else self.new_job_id()
        trace = None
        if tracing.on_enqueue is not None:  # tracing is on (quick_queue.otel): a span per job
            _check_size(topic, key, payload_raw + b" " * tracing.TRACE_ROOM)
            trace = tracing.on_enqueue(tenant, topic, job_id)
        return NewJob(
            tenant, job_id, topic, payload_raw, priority, max_retries, to_us(due), key, trace,
            fresh=key is None,  # a made id: enqueue skips the look for an earlier copy
        )

    def new_jobs(
        self, items: Iterable[Mapping[str, Any] | tuple[Any, ...]], now: float,
        waits: dict[int, Wait] | None = None,
    ) -> list[NewJob]:
        """``enqueue_many``'s items: dicts of ``enqueue``'s arguments or (tenant, topic,
        payload) tuples; one bad item refuses the whole batch. ``waits`` receives the parents
        of the items with ``after=`` (by index; without it, ``after=`` is refused)."""
        news: list[NewJob] = []
        # A topic's checks and defaults are made once (_plan_of) and each tenant is checked
        # once per batch: a plain item then costs its payload, id and NewJob only (issue 10:
        # 7.8 µs an item before, 3.3 after, measured in enqueue_many of 1,000 {"i": i}).
        tenants: set[str] = set()
        due = to_us(now)
        plain = tracing.on_enqueue is None  # a traced job takes new_job's path (its span)
        for item in items:
            if plain and type(item) is dict and item.keys() == _PLAIN_FIELDS:
                new = self._plain_job(
                    item["tenant"], item["topic"], item["payload"], due, tenants
                )
                if new is not None:
                    news.append(new)
                    continue
            if isinstance(item, tuple) and len(item) == 3:
                new = self._plain_job(*item, due, tenants) if plain else None
                news.append(new if new is not None else self.new_job(*item, now=now))
            elif isinstance(item, Mapping):
                if item.keys() <= FIELDS and "tenant" in item and "topic" in item:
                    # payload is optional, as in enqueue (None)
                    news.append(self.new_job(now=now, **{"payload": None, **item}))
                else:  # after=, or a field unknown or missing
                    news.append(self._item_job(item, now, news, waits))
            else:
                raise InvalidArgument(
                    "enqueue_many takes dicts of enqueue's arguments or (tenant, topic, "
                    f"payload) tuples, not {item!r:.80}"
                )
        total = sum(len(new.payload) for new in news)
        if total > BATCH_LIMIT:
            raise InvalidArgument(
                f"enqueue_many of {len(news)} jobs carries {total:,} bytes of payload; one call "
                f"is one transaction, which holds at most {BATCH_LIMIT:,}: split the jobs over "
                "several enqueue_many calls (each is all-or-nothing on its own)"
            )
        return news

    def _item_job(
        self, item: Mapping[str, Any], now: float, earlier: list[NewJob],
        waits: dict[int, Wait] | None,
    ) -> NewJob:
        """The job of a dict item of ``enqueue_many`` with ``after=``/``on_parent_failure=``
        or a field unknown or missing (``earlier``: the items before it). Its errors are
        ``enqueue``'s, word for word; those of ``after=`` name the item."""
        unknown = set(item) - ITEM_FIELDS
        if unknown:
            raise InvalidArgument(
                f"unknown enqueue field(s): {', '.join(sorted(map(str, unknown)))}; "
                f"the fields are {', '.join(sorted(ITEM_FIELDS))}"
            )
        missing = [name for name in ("tenant", "topic") if name not in item]
        if missing:
            raise InvalidArgument(
                f"enqueue_many item {len(earlier)} has no {' and no '.join(missing)} (a "
                "dict takes enqueue's keyword arguments)"
            )
        fields = {"payload": None, **item}  # payload is optional, as in enqueue (None)
        after = fields.pop("after", None)
        rule = fields.pop("on_parent_failure", "dead")
        new = self.new_job(now=now, **fields)
        try:  # as in enqueue: on_parent_failure acts only with after=, but is checked anyway
            if rule != "dead":
                check_rule(rule)
            parents = [] if after is None else parents_of(new.tenant, after, rule, earlier)
            if parents and waits is None:
                raise InvalidArgument("after= is taken by JobQueue.enqueue_many only")
        except InvalidArgument as error:  # enqueue's message, naming the item
            raise InvalidArgument(f"enqueue_many item {len(earlier)}: {error}") from None
        if parents and waits is not None:
            waits[len(earlier)] = (parents, rule)
        return new

    def _plain_job(
        self, tenant: object, topic: object, payload: Any, due: int, tenants: set[str] | None,
    ) -> NewJob | None:
        """``new_job`` for a job of tenant, topic and payload only (``due`` is now), its
        topic's checks made once (``_plan_of``) and its tenant's once per batch (``tenants``,
        None for a single job); None for anything else (a class as topic, a topic without a
        handler on a queue that has some, a name that fails its check): ``new_job`` then
        decides, with its errors and warning."""
        if type(tenant) is not str or type(topic) is not str:
            return None
        if tenants is None or tenant not in tenants:
            if not tenant or len(tenant) > MAX_TENANT:
                return None
            if tenants is not None:
                tenants.add(tenant)
        plan = self._plan_of(topic)
        if plan is None:
            return None
        spec, priority, max_retries, room = plan
        payload_raw = _encode_payload(topic, payload, spec)
        if len(payload_raw) > room:
            _check_size(topic, None, payload_raw)
        return NewJob(
            tenant, self.new_job_id(), topic, payload_raw, priority, max_retries, due, None,
            None, True,
        )

    def _plan_of(self, topic: str) -> _Plan | None:
        """``_plan(topic)``, kept until a handler is registered (or too many topics are)."""
        plans = self._plans
        if self._plans_version != self.registry.version:
            plans = self._plans = {}
            self._plans_version = self.registry.version
        try:
            return plans[topic]
        except KeyError:  # (not "in" then [ ]: another thread may clear it in between)
            pass
        if len(plans) >= MAX_PLANS:
            plans.clear()  # topics made on the fly must not grow it without bound
        plan = plans[topic] = self._plan(topic)
        return plan

    def _plan(self, topic: str) -> _Plan | None:
        """What every plain job of ``topic`` shares, checked as ``new_job`` checks it; None
        when ``new_job`` must see each such job (it raises or warns)."""
        if not topic or len(topic) > MAX_TOPIC:
            return None
        spec = self.registry.get(topic)
        if spec is None and self.registry.topics():
            return None  # new_job warns (UnknownTopicWarning)
        priority = spec.priority if spec and spec.priority is not None else (
            self.settings.default_priority
        )
        max_retries = spec.max_retries if spec is not None else None
        try:
            _check_priority(priority)
            if max_retries is not None:
                _check_max_retries(max_retries)
        except InvalidArgument:
            return None
        # the payload length up to which _check_size returns at once (its bound, keyless)
        room = VALUE_LIMIT - (400 + 12 * len(topic) + RUNTIME_ROOM)
        return spec, priority, max_retries, room

    def _warn_unknown(self, topic: str) -> None:
        # A producer with no handlers enqueues for workers elsewhere: only a queue that knows
        # some topics can tell that this one is probably misspelt.
        known = self.registry.topics()
        if known:
            warnings.warn(
                f"no handler registered on this queue takes topic {topic!r} (known: "
                f"{', '.join(known)}); the job is enqueued, and a worker without such a "
                "handler will move it to the dead letters. Check the spelling, or register "
                "the handler",
                UnknownTopicWarning,
                stacklevel=_outside_stacklevel(),
            )


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside quick_queue."""
    frame = sys._getframe(2)  # the caller of the function that warns
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
        "quick_queue."
    ):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _check_name(what: str, value: object, longest: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string, got {value!r:.80}")
    if len(value) > longest:
        raise InvalidArgument(
            f"{what} is {len(value)} characters long; the limit is {longest}"
        )


def _encode_payload(topic: str, payload: Any, spec: JobSpec | None) -> bytes:
    """The payload as stored JSON text, validated by the topic's model when it has one."""
    if type(payload) is dict and (spec is None or spec.payload_model is None):
        stored: Any = payload  # what both branches below make of a plain dict, checked sooner
    elif spec is not None:
        try:
            stored = spec.validate_payload(payload if payload is not None else {})
        except ValueError as error:
            raise PayloadError(str(error)) from None
    else:
        stored = payload.model_dump(mode="json") if hasattr(payload, "model_dump") else payload
    try:
        return dump(stored)
    except (TypeError, ValueError) as error:
        raise PayloadError(
            f"payload for topic {topic!r} is not JSON-serialisable: {error}; pass dicts, "
            "lists, strings, finite numbers, booleans and None (or a pydantic model)"
        ) from None


def _due(now: float, in_: float | timedelta | None, at: datetime | None) -> float:
    if in_ is not None and at is not None:
        raise InvalidArgument("give in_ or at, not both (in_ is a delay, at a time)")
    if in_ is not None:
        seconds = in_.total_seconds() if isinstance(in_, timedelta) else in_
        if (
            isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY
        ):
            raise InvalidArgument(
                f"in_ must be a delay in seconds (or a timedelta) from 0 to {MAX_DELAY:g} "
                f"(a century), got {in_!r}"
            )
        return now + seconds
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidArgument(
                f"at must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {at!r}"
            )
        due = at.timestamp()
        if due > now + MAX_DELAY:
            raise InvalidArgument(f"at must be within a century from now, got {at.isoformat()}")
        return due
    return now


def _check_priority(priority: object) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
        0 <= priority <= MAX_PRIORITY
    ):
        raise InvalidArgument(
            f"priority must be an integer in 0..{MAX_PRIORITY} (lower runs first), "
            f"got {priority!r}"
        )


def _check_max_retries(max_retries: object) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidArgument(f"max_retries must be an integer >= 0, got {max_retries!r}")


def _check_size(topic: str, key: str | None, payload_raw: bytes) -> None:
    """A job is one stored value: refuse a payload that would not fit, with the room a running
    job needs (its lease token, a trimmed error, the dead-letter fields) kept free."""
    # The header is at most ~250 bytes plus the topic and key escaped (12 bytes a character
    # at worst, outside the BMP): most payloads are far below the limit and skip the exact
    # measure.
    bound = 400 + 12 * (len(topic) + len(key or "")) + RUNTIME_ROOM
    if len(payload_raw) + bound <= VALUE_LIMIT:
        return
    limit = VALUE_LIMIT - RUNTIME_ROOM - record_overhead(topic, key)
    if len(payload_raw) > limit:
        raise PayloadError(
            f"payload for topic {topic!r} is {len(payload_raw):,} bytes as JSON; a job's "
            f"payload may be at most {limit:,} bytes (each job is one stored value of at most "
            f"{VALUE_LIMIT:,} bytes). Store the large data elsewhere (a file, an object "
            "store, a table) and pass a reference to it in the payload"
        )
