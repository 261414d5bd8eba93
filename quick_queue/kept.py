"""What a run hands to the store when its job keeps its result (``@job(keep_result=...)`` or
the queue's ``keep_result`` setting): ``kept_of`` builds the ``outcomes.Kept`` the executor
puts on the outcome; ``core.history`` writes it when the outcome ends the job.

A returned value that cannot be kept (not JSON, too large) never fails the job: the job still
completes, and its entry says why the value is missing (``note``), which ``queue.result``
raises as ``ResultNotKept``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import pydantic

from quick_queue.core.history import VALUE_ROOM
from quick_queue.jobs import JobSpec
from quick_queue.models import LeasedJob, dump, to_us
from quick_queue.outcomes import Kept
from quick_queue.settings import Settings

NO_VALUE: Any = object()  # the run ended without a value (a failure, a discard)


class RunLike(Protocol):
    """What ``kept_of`` reads of a consumer's running job (``consumer.inflight.Running``)."""

    job: LeasedJob
    spec: JobSpec | None
    started: float
    started_mono: float


def kept_of(run: RunLike, settings: Settings, value: Any = NO_VALUE) -> Kept | None:
    """The ``Kept`` of a run whose job keeps its result, else None (the default, which costs
    one comparison: nothing is kept unless asked)."""
    spec = run.spec
    keep = spec.keep_seconds(settings.keep_result) if spec is not None else settings.keep_result
    if not keep:
        return None
    raw, note = (None, None) if value is NO_VALUE else encode_value(value)
    record = run.job.record
    duration = time.monotonic() - run.started_mono if run.started_mono else None
    return Kept(
        to_us(keep), to_us(run.started) if run.started else 0, duration, raw, note,
        record.topic, record.attempt, record.max_retries, record.priority, record.enqueued,
        record.error, record.key,
    )


def encode_value(value: Any) -> tuple[bytes | None, str | None]:
    """``value`` as JSON bytes, or None and a note saying why it cannot be kept."""
    try:
        if isinstance(value, pydantic.BaseModel):
            value = value.model_dump(mode="json")
        raw = dump(value)
    except (TypeError, ValueError) as error:
        return None, (f"result not kept: {type(value).__name__} is not JSON "
                      f"({type(error).__name__}: {str(error)[:200]})")
    if len(raw) > VALUE_ROOM:
        return None, (f"result not kept: {len(raw):,} bytes as JSON, over the "
                      f"{VALUE_ROOM:,}-byte limit (store large results elsewhere and return "
                      "a reference)")
    return raw, None
