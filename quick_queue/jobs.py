"""Handlers: the ``@job`` decorator, the registry, payload models and the return contract.

=========================================  =================================================
handler outcome                            effect
=========================================  =================================================
returns None, a plain value, or Ok(value)  completed
raises, returns Error(reason) or an        attempt spent; retried with backoff, dead letter
exception, times out, or its process dies  after max_retries
returns Snooze(seconds)                    due again later; no retry spent (snoozes capped)
returns Discard(reason)                    dead letter with the reason
unknown topic, payload fails validation    dead letter with a clear reason
anything else returned                     an error naming the handler
=========================================  =================================================
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pydantic

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
            raise ValueError(
                f"Snooze(seconds) needs a number in 0..{MAX_SNOOZE:g}, got {self.seconds!r}"
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
    since its completion will be rejected. ``tr`` is the transaction of a transactional job."""

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
            raise ValueError(describe_validation(self.topic, error)) from None
        return obj.model_dump(mode="json")

    def load_payload(self, stored: Any) -> Any:
        """The payload handed to ``perform``: the model instance when there is a model."""
        if self.payload_model is None:
            return stored
        try:
            return self.payload_model.model_validate(stored)
        except pydantic.ValidationError as error:
            raise ValueError(describe_validation(self.topic, error)) from None

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
    """Declare a handler class for ``topic``. The class has ``perform(self, payload, meta)`` and
    may define a nested pydantic ``Payload`` model; see the module docstring for what
    ``perform`` may return."""
    if not isinstance(topic, str) or not topic:
        raise ValueError("@job needs a non-empty topic string")
    if priority is not None and not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be in 0..{MAX_PRIORITY}, got {priority!r}")
    if max_retries is not None and max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0 seconds")

    def decorate(cls: type[T]) -> type[T]:
        if not inspect.isclass(cls):
            raise TypeError("@job decorates a class with a perform(self, payload, meta) method")
        perform = getattr(cls, "perform", None)
        if perform is None or not callable(perform):
            raise TypeError(f"{cls.__qualname__} needs a perform(self, payload, meta) method")
        if inspect.iscoroutinefunction(perform):
            raise TypeError(f"{cls.__qualname__}.perform must be a plain (not async) method")
        model = getattr(cls, "Payload", None)
        if model is not None and not (
            inspect.isclass(model) and issubclass(model, pydantic.BaseModel)
        ):
            raise TypeError(f"{cls.__qualname__}.Payload must be a pydantic BaseModel")
        spec = JobSpec(
            topic, cls, model, priority, max_retries, timeout, transactional,
            backoff_base, backoff_factor, backoff_cap,
        )
        cls.__qq_job__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


def spec_of(handler: type) -> JobSpec:
    spec = getattr(handler, "__qq_job__", None)
    if not isinstance(spec, JobSpec):
        raise TypeError(f"{getattr(handler, '__qualname__', handler)!r} is not decorated with @job")
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
            raise ValueError(
                f"topic {spec.topic!r} already has handler {existing.name}; "
                f"cannot also register {spec.name}"
            )
        self._specs[spec.topic] = spec
        return spec

    def get(self, topic: str) -> JobSpec | None:
        return self._specs.get(topic)

    def topics(self) -> list[str]:
        return sorted(self._specs)

    def handlers(self) -> list[type]:
        return [spec.handler for spec in self._specs.values()]


def interpret(result: Any, spec: JobSpec) -> Result:
    """Map what ``perform`` returned onto the return contract."""
    if result is None:
        return Ok()
    if isinstance(result, Ok | Error | Snooze | Discard):
        return result
    if isinstance(result, BaseException):
        return Error(f"{type(result).__name__}: {result}")
    if inspect.isawaitable(result) or inspect.isgenerator(result):
        return Error(
            f"handler {spec.name} returned {type(result).__name__}; perform must be "
            "synchronous and return None, a value, Ok, Error, Snooze or Discard"
        )
    if isinstance(result, str | int | float | bool | list | dict | tuple | pydantic.BaseModel):
        return Ok(result)
    return Error(
        f"handler {spec.name} returned {type(result).__name__} {result!r:.80}; expected "
        "None, a plain value, Ok, Error, Snooze or Discard"
    )
