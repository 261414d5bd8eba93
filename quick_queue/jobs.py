"""Handlers: the ``@job`` decorator, the registry, payload models and the return contract.

The return rule, exactly (``interpret`` applies it):

==============================================  ============================================
what ``perform`` does                           effect
==============================================  ============================================
returns ``None`` or ``Ok(value)``               completed
returns a str, int, float, bool, list, tuple,   completed (the value is kept only for a job
dict or pydantic model                          that asks: ``@job(keep_result=...)``)
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pydantic

from quick_queue.core.rates import parse_rate
from quick_queue.errors import ConfigurationError, HandlerError, InvalidArgument, PayloadError
from quick_queue.meta import JobMeta, LeaseFlag

__all__ = ["JobMeta", "LeaseFlag"]  # re-exported: they lived here before quick_queue.meta
from quick_queue.settings import MAX_PRIORITY

T = TypeVar("T")
MAX_SNOOZE = 10 * 366 * 86400.0  # ten years, in seconds
MAX_RUNNING = 100_000  # the largest max_running, @job's or the queue's


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
    keep_result: float | None = None  # seconds; None: the queue's keep_result setting
    is_async: bool = False  # perform is ``async def``: the worker must await it
    max_running: int | None = None  # attempts at once across every worker (quick_queue.flow)
    rate_limit: str | None = None  # e.g. "100/s": leases across every worker

    @property
    def rate_interval(self) -> int | None:
        """``rate_limit`` as microseconds between leases (None: no limit)."""
        return None if self.rate_limit is None else parse_rate(self.rate_limit)

    def keep_seconds(self, queue_default: float) -> float:
        """How long a finished job of this handler is kept (0: not at all)."""
        return queue_default if self.keep_result is None else self.keep_result

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
    keep_result: float | timedelta | None = None,
    max_running: int | None = None,
    rate_limit: str | None = None,
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
    * ``async def perform``: the worker awaits it on its event loop (one per worker process,
      as many tasks at once as the concurrency allows, beside plain handlers in threads).
      Leases, timeouts, ``cancel()`` and shutdown behave as for a plain handler, except that
      the task is *cancelled* (``CancelledError`` at its current ``await``) when it times out,
      its lease is lost or shutdown's grace ends. It must not block (``time.sleep``, a
      blocking client): that stalls every async job of the worker. ``transactional=True``
      with an async perform is refused here (``HandlerError``): the transaction is blocking
      and bounded to 5 s, so a transactional handler is a plain ``def perform``.
    * ``keep_result`` (seconds or a ``timedelta``) is read by the worker that runs the job:
      once the job ends (completed, dead, discarded, or cancelled) its state, attempts,
      timings, returned value and last error are kept that long, for ``get_job`` and
      ``queue.result``. None: the queue's ``keep_result`` setting (0 by default: nothing is
      kept); 0 keeps nothing even on a queue that keeps results.
    * ``max_running`` (1..100000) and ``rate_limit`` ("100/s", "30/min", "5/h") hold across
      every worker process and machine, in the store (see ``quick_queue.flow``): each worker
      that runs this handler writes them there when it starts (the last one started wins for
      the topic), and a queue-level ``set_max_running`` / ``set_rate_limit`` of the topic wins
      over them while it is set.
    """
    _check_options(topic, priority, max_retries, timeout)
    _check_flow(topic, max_running, rate_limit)
    keep = keep_seconds(f"@job(topic={topic!r}): keep_result", keep_result)

    def decorate(cls: type[T]) -> type[T]:
        model = _check_class(cls)
        is_async = inspect.iscoroutinefunction(getattr(cls, "perform", None))
        _check_async(cls, transactional, is_async)
        spec = JobSpec(
            topic, cls, model, priority, max_retries, timeout, transactional,
            backoff_base, backoff_factor, backoff_cap, keep, is_async, max_running,
            rate_limit,
        )
        cls.__qq_job__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


def _check_async(cls: type, transactional: bool, is_async: bool) -> None:
    """``transactional=True`` needs a plain ``def perform`` (see ``job``'s docstring)."""
    if transactional and is_async:
        raise HandlerError(
            f"{cls.__qualname__}: transactional=True needs a plain `def perform`, not "
            "`async def`: its writes go through meta.tr, a blocking transaction that must "
            "commit within 5 s, which would stall the worker's event loop; define perform "
            "with `def` (it then runs in a worker thread), or drop transactional=True"
        )


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


def _check_flow(topic: object, max_running: object, rate_limit: object) -> None:
    if max_running is not None and (
        isinstance(max_running, bool) or not isinstance(max_running, int)
        or not 1 <= max_running <= MAX_RUNNING
    ):
        raise ConfigurationError(
            f"@job(topic={topic!r}): max_running must be a whole number from 1 to "
            f"{MAX_RUNNING}, got {max_running!r}"
        )
    if rate_limit is not None:
        try:
            parse_rate(rate_limit)  # type: ignore[arg-type]
        except InvalidArgument as error:
            raise ConfigurationError(f"@job(topic={topic!r}): rate_limit: {error}") from None


# A century, in seconds: longer retention is surely a unit mistake (milliseconds?).
MAX_KEEP = 100 * 366 * 86400.0


def keep_seconds(what: str, value: object) -> float | None:
    """``keep_result`` as seconds (None stays None); ConfigurationError for anything else
    than a number or ``timedelta`` in 0..MAX_KEEP."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not 0 <= value <= MAX_KEEP):
        raise ConfigurationError(
            f"{what} must be seconds (a number or a timedelta) in 0..{MAX_KEEP:g}, "
            f"got {value!r}"
        )
    return float(value)


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
        self.version = 0  # counts registrations: what a Producer's cached plans depend on
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
        self.version += 1
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
    if inspect.iscoroutine(result):
        result.close()  # never awaited here: closing it spares a "never awaited" warning
        return Error(
            f"handler {spec.name} returned a coroutine from a plain perform (a forgotten "
            "await, or a call to an async function): define perform with `async def` for "
            "the worker to await it, or await the call inside it"
        )
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
