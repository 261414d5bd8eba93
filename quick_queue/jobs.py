"""Handlers: the ``@job`` decorator, the registry, payload models and the return contract.

The return rule, exactly (``interpret`` applies it):

==============================================  ============================================
what ``perform`` does                           effect
==============================================  ============================================
returns ``None`` or ``Ok(value)``               completed
returns a str, int, float, bool, list, tuple,   completed (the value is not stored: a
dict or pydantic model                          completed job leaves nothing behind)
raises, returns ``Error(reason)`` or an         attempt spent; retried with backoff, dead
exception instance, times out, or its process   letter after max_retries
dies
returns ``Snooze(seconds)``                     due again later; no retry spent (snoozes
                                                capped by the max_snoozes setting)
returns ``Discard(reason)``                     dead letter with the reason
returns anything else (a set, a datetime, an    attempt spent, as a failure whose reason
object, a coroutine, a generator, ...)          names the handler and the returned type
unknown topic, payload fails validation         dead letter with a clear reason
==============================================  ============================================
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pydantic

from quick_queue.errors import ConfigurationError, HandlerError, InvalidArgument, PayloadError
from quick_queue.kv.api import Transaction
from quick_queue.settings import MAX_PRIORITY

T = TypeVar("T")
MAX_SNOOZE = 10 * 366 * 86400.0  # ten years, in seconds


@dataclass(frozen=True)
class Ok:
    """Done; ``value`` is the handler's result."""

    value: Any = None


@dataclass(frozen=True)
class Error:
    """A failed attempt with a reason: retried with backoff, dead letter after max_retries."""

    reason: str


@dataclass(frozen=True)
class Snooze:
    """Run again in ``seconds`` without spending a retry."""

    seconds: float

    def __post_init__(self) -> None:
        # NaN fails the comparison too; the cap keeps the due time a storable key
        if not isinstance(self.seconds, int | float) or not 0 <= self.seconds <= MAX_SNOOZE:
            raise InvalidArgument(
                f"Snooze(seconds) needs a number of seconds in 0..{MAX_SNOOZE:g}, "
                f"got {self.seconds!r}"
            )


@dataclass(frozen=True)
class Discard:
    """Give up on the job: it goes to the dead letters with ``reason``."""

    reason: str


Result = Ok | Error | Snooze | Discard


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


@dataclass(frozen=True)
class JobSpec:
    """A registered handler class and its options."""

    topic: str
    handler: type
    payload_model: type[pydantic.BaseModel] | None
    priority: int | None
    max_retries: int | None
    timeout: float | None
    transactional: bool
    backoff_base: float | None
    backoff_factor: float | None
    backoff_cap: float | None

    def validate_payload(self, payload: Any) -> Any:
        """The payload as stored (JSON-ready); ValueError naming the topic and the field."""
        model = self.payload_model
        if model is None:
            if isinstance(payload, pydantic.BaseModel):
                return payload.model_dump(mode="json")
            return payload
        try:
            if isinstance(payload, pydantic.BaseModel) and not isinstance(payload, model):
                payload = payload.model_dump()
            obj = payload if isinstance(payload, model) else model.model_validate(payload)
        except pydantic.ValidationError as error:
            raise PayloadError(describe_validation(self.topic, error)) from None
        return obj.model_dump(mode="json")

    def load_payload(self, stored: Any) -> Any:
        """The payload handed to ``perform``: the model instance when there is a model."""
        if self.payload_model is None:
            return stored
        try:
            return self.payload_model.model_validate(stored)
        except pydantic.ValidationError as error:
            raise PayloadError(describe_validation(self.topic, error)) from None

    @property
    def name(self) -> str:
        return f"{self.handler.__module__}.{self.handler.__qualname__}"


def describe_validation(topic: str, error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ())) or "payload"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return f"invalid payload for topic {topic!r}: " + "; ".join(problems)


def job(
    *,
    topic: str,
    priority: int | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    transactional: bool = False,
    backoff_base: float | None = None,
    backoff_factor: float | None = None,
    backoff_cap: float | None = None,
) -> Callable[[type[T]], type[T]]:
    """Declare a handler class for ``topic``.

    The class has ``perform(self, payload, meta)`` and may define a nested pydantic ``Payload``
    model; the module docstring states exactly what ``perform`` may return. A class whose
    ``perform`` cannot take ``(payload, meta)`` is refused here (``HandlerError``), not on
    every run.

    Where each option applies:

    * ``priority`` (0..1000, lower runs first) is fixed when the job is enqueued: it orders the
      zone's ready jobs. It applies only where the producer knows this handler (it registered
      the class, as ``JobQueue(jobs=[...])`` or ``@queue.job``); a producer that does not
      (``quick-queue enqueue``, another service) gives the job the queue's
      ``default_priority`` unless it passes ``priority=``.
    * ``max_retries`` is resolved by the worker that runs the job, when the producer passed
      none: an attempt's failure is judged by the running handler's ``max_retries`` (else the
      queue's setting). An explicit ``enqueue(max_retries=...)`` wins.
    * ``timeout``, ``transactional`` and the backoff options are read by the worker at run
      time.
    * ``transactional=True``: ``perform`` gets ``meta.tr``, and its writes commit in the same
      transaction as the job's completion: exactly once, or not at all (any other outcome
      rolls them back). It may read and write through ``meta.tr`` (and enqueue with
      ``tr=meta.tr``); work outside the store is not undone and may repeat. It must return
      within 5 seconds (a transaction's lifetime on FoundationDB, enforced alike on the
      embedded engine): a longer run fails the attempt ("ran longer than the 5 s transaction
      limit"); use ``transactional=False`` for long work. A conflict with another writer of
      what it read reruns ``perform`` in the same attempt (up to 5 times).
    """
    _check_options(topic, priority, max_retries, timeout)

    def decorate(cls: type[T]) -> type[T]:
        model = _check_class(cls)
        spec = JobSpec(
            topic, cls, model, priority, max_retries, timeout, transactional,
            backoff_base, backoff_factor, backoff_cap,
        )
        cls.__qq_job__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


def _check_options(
    topic: object, priority: object, max_retries: object, timeout: object
) -> None:
    if not isinstance(topic, str) or not topic:
        raise ConfigurationError(f"@job needs a non-empty topic string, got {topic!r}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"@job(topic={topic!r}): priority must be an integer in 0..{MAX_PRIORITY} "
            f"(lower runs first), got {priority!r}"
        )
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ConfigurationError(
            f"@job(topic={topic!r}): max_retries must be an integer >= 0, got {max_retries!r}"
        )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ConfigurationError(
            f"@job(topic={topic!r}): timeout must be a number of seconds > 0, got {timeout!r}"
        )


def _check_class(cls: object) -> type[pydantic.BaseModel] | None:
    """Refuse a class that cannot run as a handler; its ``Payload`` model, if any."""
    if not inspect.isclass(cls):
        raise HandlerError(
            f"@job decorates a class with a perform(self, payload, meta) method, not {cls!r}"
        )
    name = cls.__qualname__
    perform = getattr(cls, "perform", None)
    if perform is None or not callable(perform):
        raise HandlerError(f"{name} needs a perform(self, payload, meta) method")
    if inspect.iscoroutinefunction(perform):
        raise HandlerError(f"{name}.perform must be a plain (not async) method")
    _check_perform_signature(cls, name, perform)
    model = getattr(cls, "Payload", None)
    if model is not None and not (
        inspect.isclass(model) and issubclass(model, pydantic.BaseModel)
    ):
        raise HandlerError(f"{name}.Payload must be a pydantic BaseModel subclass")
    return model


def _check_perform_signature(cls: type, name: str, perform: Callable[..., Any]) -> None:
    """The worker calls ``cls().perform(payload, meta)``: refuse any other shape now."""
    try:
        signature = inspect.signature(perform)
    except (TypeError, ValueError):
        return  # no signature to read (a builtin or C callable): the first run will tell
    # An instance method seen on the class still lists self; a static or class method not.
    static = isinstance(inspect.getattr_static(cls, "perform"), staticmethod | classmethod)
    args: tuple[object, ...] = ("payload", "meta") if static else (None, "payload", "meta")
    try:
        signature.bind(*args)
    except TypeError:
        raise HandlerError(
            f"{name}.perform{signature} cannot be called as perform(self, payload, meta); "
            "define it as: def perform(self, payload, meta): ..."
        ) from None


def spec_of(handler: type) -> JobSpec:
    spec = getattr(handler, "__qq_job__", None)
    if not isinstance(spec, JobSpec):
        raise HandlerError(
            f"{getattr(handler, '__qualname__', handler)!r} is not decorated with @job; "
            "decorate it with @quick_queue.job(topic=...) or @queue.job(topic=...)"
        )
    return spec


class Registry:
    """Topic -> handler spec for one queue."""

    def __init__(self, handlers: list[type] | None = None) -> None:
        self._specs: dict[str, JobSpec] = {}
        for handler in handlers or []:
            self.register(handler)

    def register(self, handler: type) -> JobSpec:
        spec = spec_of(handler)
        existing = self._specs.get(spec.topic)
        if existing is not None and existing.handler is not handler:
            raise ConfigurationError(
                f"topic {spec.topic!r} already has handler {existing.name}; "
                f"cannot also register {spec.name} (give one of them another topic)"
            )
        self._specs[spec.topic] = spec
        return spec

    def get(self, topic: str) -> JobSpec | None:
        return self._specs.get(topic)

    def topics(self) -> list[str]:
        return sorted(self._specs)

    def handlers(self) -> list[type]:
        return [spec.handler for spec in self._specs.values()]


# The plain values that count as "done" when ``perform`` returns them (subclasses included).
DONE_VALUES: tuple[type, ...] = (str, int, float, bool, list, tuple, dict, pydantic.BaseModel)


def interpret(result: Any, spec: JobSpec) -> Result:
    """Map what ``perform`` returned onto the return contract. The rule, exactly:

    * ``None`` -> ``Ok()``; an ``Ok``, ``Error``, ``Snooze`` or ``Discard`` -> itself;
    * an instance of ``DONE_VALUES`` (str, int, float, bool, list, tuple, dict, a pydantic
      model) -> ``Ok(value)``: done (the value is not stored);
    * an exception instance -> ``Error("<type>: <message>")``: a failed attempt;
    * anything else (a set, a datetime, any other object, a coroutine or a generator) ->
      ``Error`` whose reason names the handler and the returned type: a failed attempt.
    """
    if result is None:
        return Ok()
    if isinstance(result, Ok | Error | Snooze | Discard):
        return result
    if isinstance(result, DONE_VALUES):
        return Ok(result)
    if isinstance(result, BaseException):
        return Error(f"{type(result).__name__}: {result}")
    if inspect.isawaitable(result) or inspect.isgenerator(result):
        return Error(
            f"handler {spec.name} returned {type(result).__name__}; perform must be "
            "synchronous and return None, a plain value, Ok, Error, Snooze or Discard"
        )
    return Error(
        f"handler {spec.name} returned {type(result).__name__} {result!r:.80}, which is not "
        "a result: return None, a str/int/float/bool/list/tuple/dict or pydantic model, "
        "Ok, Error, Snooze or Discard"
    )
