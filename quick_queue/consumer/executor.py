"""Running one leased job: payload validation, the handler call, the return contract, and the
backoff of a failed attempt. Produces an ``Outcome`` for the settler; never raises."""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Callable

from quick_queue.consumer.inflight import Running
from quick_queue.jobs import Discard, Error, JobMeta, JobSpec, Ok, Registry, Snooze, interpret
from quick_queue.kept import kept_of
from quick_queue.models import LeasedJob, to_us
from quick_queue.outcomes import Kept, Outcome, OutcomeKind
from quick_queue.settings import Settings

log = logging.getLogger("quick_queue.worker")


def backoff_seconds(
    attempt: int, settings: Settings, spec: JobSpec | None, rng: random.Random
) -> float:
    base = spec.backoff_base if spec and spec.backoff_base is not None else settings.backoff_base
    factor = (
        spec.backoff_factor if spec and spec.backoff_factor is not None
        else settings.backoff_factor
    )
    cap = spec.backoff_cap if spec and spec.backoff_cap is not None else settings.backoff_cap
    delay = min(cap, base * factor ** max(0, attempt - 1))
    jitter = settings.backoff_jitter
    return float(delay * (1 + rng.uniform(-jitter, jitter)))


def make_meta(job: LeasedJob) -> JobMeta:
    return JobMeta.of_record(job.tenant, job.record)


def unknown_topic_outcome(job: LeasedJob, registry: Registry) -> Outcome:
    """The outcome of a job whose topic has no handler here: a dead letter, never run."""
    record = job.record
    return Outcome(
        job.tenant, record.job_id, job.token, OutcomeKind.DEAD,
        reason=f"no handler for topic {record.topic!r} in this worker "
        f"(known topics: {', '.join(registry.topics()) or 'none'})",
        dead_kind="unknown_topic",
    )


def to_outcome(
    running: Running, result: object, now: float | Callable[[], float], settings: Settings,
    rng: random.Random,
) -> Outcome:
    """Turn what ``perform`` returned (or raised: pass the exception; or ``call_handler``'s
    word that the payload failed its model) into an outcome. ``now``: the store's time, or
    how to read it (read only for a snooze or a retry)."""
    job, spec = running.job, running.spec
    assert spec is not None
    record = job.record
    if result is None:  # what most handlers return: interpret's Ok(), without building it
        return done_outcome(job.tenant, record.job_id, job.token, record.topic, record.at,
                            kept_of(running, settings, None))
    if isinstance(result, _BadPayload):
        return Outcome(job.tenant, record.job_id, job.token, OutcomeKind.DEAD,
                       reason=str(result), dead_kind="bad_payload")
    try:
        verdict = interpret(result, spec)
    except Exception as error:  # noqa: BLE001 - e.g. a returned object whose repr() raises
        verdict = Error(
            f"handler {spec.name} returned {type(result).__name__}, which could not be "
            f"interpreted ({type(error).__name__}: {_text(error)})"
        )
    if isinstance(verdict, Ok):
        return done_outcome(job.tenant, record.job_id, job.token, record.topic, record.at,
                            kept_of(running, settings, verdict.value))
    if not isinstance(now, float | int):
        now = now()
    if isinstance(verdict, Snooze):
        return Outcome(job.tenant, record.job_id, job.token, OutcomeKind.SNOOZE,
                       at=to_us(now + verdict.seconds))
    if isinstance(verdict, Discard):
        return Outcome(job.tenant, record.job_id, job.token, OutcomeKind.DISCARD,
                       reason=_text(verdict.reason)[:2000], kept=kept_of(running, settings))
    assert isinstance(verdict, Error)
    delay = backoff_seconds(record.attempt, settings, spec, rng)
    # The handler's retry limit: it decides when the producer fixed none (see Outcome).
    limit = settings.max_retries if spec.max_retries is None else spec.max_retries
    return Outcome(job.tenant, record.job_id, job.token, OutcomeKind.RETRY, at=to_us(now + delay),
                   reason=_text(verdict.reason)[:2000], max_retries=limit,
                   kept=kept_of(running, settings))


def done_outcome(
    tenant: str, job_id: str, token: str, topic: str, lease_at: int, kept: Kept | None
) -> Outcome:
    """``Outcome(tenant, job_id, token, OutcomeKind.DONE, topic=topic, lease_at=lease_at,
    kept=kept)``: every completion's, built without the frozen dataclass's generated
    ``__init__``, which sets each of its 11 fields through ``object.__setattr__`` (3.4-3.7 ->
    1.3-1.4 µs a completion, timeit). The fields go into the instance's dict at once; a test
    compares the result with the generated ``__init__``'s, field for field."""
    outcome = _new_object(Outcome)
    outcome.__dict__.update(
        tenant=tenant, job_id=job_id, token=token, kind=_DONE, at=0, reason="",
        dead_kind="", topic=topic, lease_at=lease_at, max_retries=None, kept=kept,
    )
    return outcome


_new_object = object.__new__
_DONE = OutcomeKind.DONE  # (a global: an enum member read through its class costs more)


def call_handler(
    running: Running, passthrough: tuple[type[BaseException], ...] = ()
) -> object:
    """Call ``perform``; an exception is returned (with its traceback summarised), not raised,
    except one of ``passthrough`` (a transactional handler's store errors: its retry loop
    decides what they mean)."""
    spec = running.spec
    assert spec is not None
    try:
        payload = spec.load_payload(running.job.record.payload)
    except ValueError as error:
        return _BadPayload(str(error))
    try:
        handler = spec.handler()
        return handler.perform(payload, running.meta)
    except passthrough:
        raise
    except BaseException as error:  # noqa: BLE001 - the worker survives whatever a job raises
        # (SystemExit and KeyboardInterrupt included: raised by a job in a worker thread they
        # would only kill that thread and strand its job)
        return _error_of(error)


async def await_handler(running: Running) -> object:
    """``call_handler`` for an ``async def perform``: awaits it on the running loop. What it
    raises, ``CancelledError`` included (the consumer cancelled it, or it cancelled itself),
    is returned as an ``Error``; the outcome of a run the consumer cancelled has already been
    decided (timeout, release) or will be refused (lease lost), so it is only a report."""
    spec = running.spec
    assert spec is not None
    try:
        payload = spec.load_payload(running.job.record.payload)
    except ValueError as error:
        return _BadPayload(str(error))
    try:
        return await spec.handler().perform(payload, running.meta)
    except asyncio.CancelledError:
        return Error(f"cancelled while running (handler {spec.name})")
    except BaseException as error:  # noqa: BLE001 - the loop survives whatever a job raises
        return _error_of(error)


def _error_of(error: BaseException) -> Error:
    where = traceback.extract_tb(error.__traceback__)[-1:]
    at = f" (at {where[0].filename}:{where[0].lineno})" if where else ""
    # an Error, not an exception: interpret() would prefix the type name a second time
    return Error(f"{type(error).__name__}: {_text(error)}{at}")


def _text(value: object) -> str:
    """``str(value)`` that never raises: reasons and messages come from user code."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__}: str() failed>"


class _BadPayload(Exception):
    """The stored payload no longer validates against the handler's model."""


def timeout_outcome(running: Running, now: float, settings: Settings,
                    rng: random.Random) -> Outcome:
    spec = running.spec
    assert spec is not None and spec.timeout is not None
    return to_outcome(
        running, Error(f"timed out after {spec.timeout:g} s (handler {spec.name})"), now,
        settings, rng,
    )
