"""The runtime's event stream: one typed event per thing that happens to a job in a consumer.

Every consumer emits, in this order for one attempt, ``started`` and then exactly one of
``completed``, ``retried``, ``snoozed``, ``discarded``, ``dead``, ``released`` (the outcome was
applied), ``cancelled`` (the job was cancelled while it ran; its result was dropped) or
``stale`` (its lease was lost to another consumer; nothing changed). ``lease_lost`` may come in
between, when the lease keeper learns the lease is gone (the handler sees
``meta.lease_lost`` set at the same moment). A job that dies without running (unknown topic,
payload that no longer validates) emits ``dead`` with no ``started``; a prefetched job handed
back unrun emits ``released``.

Subscribe with ``queue.events.subscribe(fn)`` (``fn(event)`` is called on the consumer's own
threads, so keep it quick and thread-safe; an exception in it is logged and swallowed). Each
consumer has a stream of its own that forwards to its queue's: the consumer's ``Summary`` is
one subscriber, the worker log another (``quick_queue.worker`` logger, see ``log_event``), and
metrics, tracing or a dashboard can be more. Nothing else counts outcomes. A subscriber with
a ``skips(kind)`` method that returns True is not counted as a reader of that kind: when no
subscriber reads ``started``, a worker does not build it (``EventStream.wants``). The outcomes
a consumer settles in one transaction are emitted together (``EventStream.emit_many``): every
subscriber still gets every event, in order, one call each, unless it has an
``on_many(events)`` method, which takes the whole batch in one call (an ``EventBatch`` for a
batch of completions, whose events are built only if someone reads them).

``JobEvent.counters`` names the process counters the event adds to (from
``quick_queue.outcomes.EFFECTS``: a failed last attempt counts ``failed`` and ``dead``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as TallyCounter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain
from operator import attrgetter
from typing import Any, overload

from quick_queue.outcomes import Effect, OutcomeKind
from quick_queue.telemetry import Counters

log = logging.getLogger("quick_queue.worker")


class EventKind(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    RETRIED = "retried"
    SNOOZED = "snoozed"
    DISCARDED = "discarded"
    DEAD = "dead"
    RELEASED = "released"
    LEASE_LOST = "lease_lost"
    CANCELLED = "cancelled"
    STALE = "stale"


@dataclass(frozen=True, slots=True, init=False)
class JobEvent:
    """One event. ``attempt`` is the attempt that ran (1-based). ``duration``: seconds the
    handler had run when the event was emitted (None when it never started). ``outcome``: the
    outcome the runtime settled or tried to (None for ``started`` and ``lease_lost``).
    ``reason``: the error, discard or dead-letter reason, if any. ``waited``: on ``started``,
    seconds from when the job became due to when its handler started (pick-up latency).
    ``trace``: on ``started``, the W3C traceparent the job carries when its producer traced it
    (``quick_queue.otel``), else None."""

    kind: EventKind
    tenant: str
    topic: str
    job_id: str
    attempt: int
    duration: float | None = None
    outcome: OutcomeKind | None = None
    reason: str = ""
    counters: tuple[str, ...] = ()
    waited: float | None = None
    trace: str | None = None

    def __init__(
        self, kind: EventKind, tenant: str, topic: str, job_id: str, attempt: int,
        duration: float | None = None, outcome: OutcomeKind | None = None, reason: str = "",
        counters: tuple[str, ...] = (), waited: float | None = None, trace: str | None = None,
    ) -> None:
        # The generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__; the slots' own setters do the same in half the time (two events
        # a job: 3.1-3.7 -> 1.7-1.8 µs each, timeit). Same fields, order and defaults as the
        # declaration above (a test compares them).
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10 = _SETTERS
        s0(self, kind)
        s1(self, tenant)
        s2(self, topic)
        s3(self, job_id)
        s4(self, attempt)
        s5(self, duration)
        s6(self, outcome)
        s7(self, reason)
        s8(self, counters)
        s9(self, waited)
        s10(self, trace)


# The slots' setters of JobEvent's fields, in declaration order (they bypass the frozen
# __setattr__, which refuses every later assignment).
_SETTERS: tuple[Callable[[JobEvent, Any], None], ...] = tuple(
    getattr(JobEvent, name).__set__ for name in JobEvent.__dataclass_fields__
)


def outcome_counters(effect: Effect) -> tuple[str, ...]:
    """The process counters of an applied outcome: the store's counters plus the event's own
    (``released`` has no store counter; ``failed`` has no event)."""
    names = [*effect.store_counters]
    if effect.event not in names:
        names.append(effect.event)
    return tuple(names)


# Counters of the events that are not applied outcomes.
OTHER_COUNTERS: dict[EventKind, tuple[str, ...]] = {
    EventKind.STARTED: (),
    EventKind.LEASE_LOST: ("leases_lost",),
    EventKind.CANCELLED: ("stale", "cancelled"),  # a dropped result, as a stale one
    EventKind.STALE: ("stale",),
}

# (a tuple: ``in`` finds a member by identity; ``OTHER_COUNTERS.get(kind) == ()`` cost
# about 700 instructions against 400-500, callgrind, once a job for ``EventStream.wants``)
_COUNTERLESS = tuple(kind for kind, counters in OTHER_COUNTERS.items() if counters == ())
_STARTED = EventKind.STARTED
Subscriber = Callable[[JobEvent], None]
_COUNTERS_OF: Callable[[JobEvent], tuple[str, ...]] = attrgetter("counters")


class EventBatch(Sequence[JobEvent]):
    """The events of one settled batch, built when first read: a sequence of ``JobEvent``
    like any list of them, which also says, without building them, which ``kinds`` it holds
    and the process counters they add to (``tally``: name -> how many events name it).

    Why (issue 10): a worker whose subscribers are only its own counter and a worker log
    below INFO reads no event of a batch of completions, only how many there were; building
    each event for nothing cost about a tenth of the settle path's instructions
    (callgrind, 105k -> 94k a job). Any subscriber that reads the events (a plain
    ``fn(event)``, metrics, tracing, the log at INFO) gets them built, once, in order."""

    __slots__ = ("_build", "_events", "kinds", "tally")

    def __init__(self, build: Callable[[], list[JobEvent]], kinds: frozenset[EventKind],
                 tally: dict[str, int]) -> None:
        self._build: Callable[[], list[JobEvent]] | None = build
        self._events: list[JobEvent] = []
        self.kinds = kinds
        self.tally = tally

    def _list(self) -> list[JobEvent]:
        if self._build is not None:
            self._events, self._build = self._build(), None
        return self._events

    def __len__(self) -> int:
        return len(self._list())

    @overload
    def __getitem__(self, index: int) -> JobEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[JobEvent]: ...

    def __getitem__(self, index: int | slice) -> JobEvent | list[JobEvent]:
        return self._list()[index]

    def __iter__(self) -> Iterator[JobEvent]:
        return iter(self._list())


class EventStream:
    """Subscribers of job events; ``emit`` calls each, then the parent stream's."""

    def __init__(self, parent: EventStream | None = None) -> None:
        self._parent = parent
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        # each subscriber's ``skips`` method (None: it has none), looked up once when it
        # subscribes rather than by ``wants`` once a job (issue 10)
        self._skips: tuple[Callable[[EventKind], bool] | None, ...] = ()
        self._failed: set[int] = set()

    def subscribe(self, subscriber: Subscriber) -> Subscriber:
        """Call ``subscriber(event)`` for every event from now on; returns it (decorator-
        friendly)."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)
            self._skips = (*self._skips, getattr(subscriber, "skips", None))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber`` (no error if it was not subscribed)."""
        with self._lock:
            kept = [(s, k) for s, k in zip(self._subscribers, self._skips, strict=True)
                    if s is not subscriber]
            self._subscribers = tuple(s for s, _ in kept)
            self._skips = tuple(k for _, k in kept)

    def emit(self, event: JobEvent) -> None:
        stream: EventStream | None = self
        while stream is not None:  # this stream, then its parent's (a loop, not a call each)
            for subscriber in stream._subscribers:  # a tuple: subscribing meanwhile is safe
                try:
                    subscriber(event)
                except Exception:  # noqa: BLE001 - logged once in _failed_once
                    stream._failed_once(subscriber)
            stream = stream._parent

    def emit_many(self, events: Sequence[JobEvent]) -> None:
        """``emit`` for each of ``events`` (a settled batch's), subscriber by subscriber: each
        subscriber gets every event in the list's order, as from ``emit`` one by one; only the
        interleaving between subscribers differs (all of the batch reaches one, then the
        next). A subscriber with an ``on_many(events)`` method gets the batch in that one call
        (the consumer's counter and worker log: issue 10, one call a batch instead of two
        calls a job); the others are called once an event, a failure logged as ``emit``
        logs it and the next event still delivered."""
        stream: EventStream | None = self
        while stream is not None:
            for subscriber in stream._subscribers:
                on_many = getattr(subscriber, "on_many", None)
                if on_many is not None:
                    try:
                        on_many(events)
                    except Exception:  # noqa: BLE001 - logged once in _failed_once
                        stream._failed_once(subscriber)
                    continue
                for event in events:
                    try:
                        subscriber(event)
                    except Exception:  # noqa: BLE001 - logged once in _failed_once
                        stream._failed_once(subscriber)
            stream = stream._parent

    def wants(self, kind: EventKind) -> bool:
        """Whether an event of ``kind`` would reach anyone: False only when every subscriber
        of this stream and of its parents declares, through a ``skips(kind)`` method, that it
        would drop such an event unread. An emitter may then not build the event at all
        (issue 10: a worker's ``started`` event cost 2-4 µs a job to build and emit, for
        nobody unless the worker log is at INFO or someone subscribed)."""
        stream: EventStream | None = self
        while stream is not None:
            for skips in stream._skips:
                if skips is None or not skips(kind):
                    return True
            stream = stream._parent
        return False

    def _failed_once(self, subscriber: Subscriber) -> None:
        if id(subscriber) not in self._failed:  # once per subscriber, not per job
            self._failed.add(id(subscriber))
            log.exception("event subscriber %r failed (logged once)", subscriber)


@dataclass
class Summary:
    """What a ``drain`` or ``run`` did, counted by this process from its events (and, for
    ``lease_races`` and ``zone_visits``, from the scanner's own counters)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    snoozed: int = 0
    discarded: int = 0
    released: int = 0
    stale: int = 0
    lease_races: int = 0
    zone_visits: int = 0
    timed_out: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, counts: dict[str, int]) -> Summary:
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "timed_out")}
        values: dict[str, Any] = {k: counts.get(k, 0) for k in known}
        return cls(**values, extra={k: v for k, v in counts.items() if k not in known})


class EventCounter:
    """A subscriber adding up the counters of the events it sees."""

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters()

    def __call__(self, event: JobEvent) -> None:
        for name in event.counters:
            self.counters.add(name)

    def on_many(self, events: Sequence[JobEvent]) -> None:
        """``__call__`` for each of ``events``, added up in C (``Counter`` over the chained
        counter names; an ``EventBatch`` knows its tally unbuilt) and added under one lock."""
        if isinstance(events, EventBatch):
            self.counters.add_many(events.tally)
        else:
            self.counters.add_many(
                TallyCounter(chain.from_iterable(map(_COUNTERS_OF, events))))

    @staticmethod
    def skips(kind: EventKind) -> bool:
        """Events of a kind that carries no counters (``started``) add nothing here."""
        return kind in _COUNTERLESS


# -- the worker log: one subscriber -----------------------------------------------------------
# The verb of each event in the log line (the CLI's tests and users' greps rely on these).
_VERBS = {
    EventKind.COMPLETED: "done",
    EventKind.RETRIED: "retry",
    EventKind.SNOOZED: "snooze",
    EventKind.DISCARDED: "discard",
    EventKind.DEAD: "dead",
    EventKind.RELEASED: "release",
}


# The kinds ``log_event`` may log at WARNING (every other kind logs at INFO).
_MAY_WARN = frozenset((EventKind.STALE, EventKind.LEASE_LOST, EventKind.DEAD))


def safe(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``, ``\\n``):
    tenant names, topics and reasons come from users and must not forge log lines or drive a
    terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def log_event(event: JobEvent) -> None:
    """Log one line per state change on the ``quick_queue.worker`` logger (INFO; WARNING for a
    job that died without running, a dropped result and a lost lease)."""
    kind = event.kind
    # a cancel is an operator's act, not a fault: INFO
    lost = kind is EventKind.LEASE_LOST and event.reason != "cancelled"
    level = logging.WARNING if kind is EventKind.STALE or lost or (
        kind is EventKind.DEAD and event.outcome is OutcomeKind.DEAD
    ) else logging.INFO
    if not log.isEnabledFor(level):
        return
    where = f"{safe(event.tenant)}/{safe(event.job_id)}"
    extra = {"job_event": event}  # for structured formatters (quick_queue.logjson)
    if kind is EventKind.STARTED:
        log.info("start %s %s attempt %d", safe(event.topic), where, event.attempt,
                 extra=extra)
    elif kind is EventKind.STALE:
        # reason: "lease taken" (expired, another consumer has it), "lease dead", or "lease
        # held" when the outcome could not be written for another reason (logged before this)
        log.warning("stale %s for %s: not applied (%s); nothing changed",
                    event.outcome or "?", where, safe(event.reason) or "lease lost", extra=extra)
    elif kind is EventKind.CANCELLED:
        log.info("cancelled %s %s while it ran; its result (%s) was dropped",
                 safe(event.topic), where, event.outcome or "?", extra=extra)
    elif kind is EventKind.LEASE_LOST:
        log.log(level, "lease lost %s %s (%s); the handler is told through meta.lease_lost",
                safe(event.topic), where, event.reason or "?", extra=extra)
    else:
        detail = f": {safe(event.reason)}" if event.reason else ""
        log.log(level, "%s %s %s%s", _VERBS[kind], safe(event.topic), where, detail,
                extra=extra)


class WorkerLog:
    """``log_event`` as a consumer's subscriber, which also says (``skips``) when it would
    log nothing: a ``started`` event is logged at INFO only (see ``EventStream.wants``)."""

    __call__ = staticmethod(log_event)  # (called directly: no wrapper frame per event)

    @staticmethod
    def on_many(events: Sequence[JobEvent]) -> None:
        """``log_event`` for each of ``events``; with INFO off (the usual worker), only the
        kinds that may log at WARNING are looked at (a level is never on while a lower one is
        off, so nothing ``log_event`` would log is skipped), and an ``EventBatch`` that holds
        none of them is not built."""
        if log.isEnabledFor(logging.INFO):
            for event in events:
                log_event(event)
        elif log.isEnabledFor(logging.WARNING) and not (
                isinstance(events, EventBatch) and not events.kinds & _MAY_WARN):
            for event in events:
                if event.kind in _MAY_WARN:
                    log_event(event)

    @staticmethod
    def skips(kind: EventKind) -> bool:
        return kind is _STARTED and not log.isEnabledFor(logging.INFO)
