"""The event path's hand-written parts (issue 10): ``JobEvent``'s own ``__init__`` builds the
same frozen event the generated one did, and a stream passes each event to its subscribers,
then to its parents', in that order."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest

from quick_queue.events import EventKind, EventStream, JobEvent
from quick_queue.outcomes import OutcomeKind

FIELDS = dataclasses.fields(JobEvent)
# What the generated __init__ of the same declaration builds: the reference
Generated = dataclasses.make_dataclass(
    "Generated", [(f.name, f.type, f.default) if f.default is not dataclasses.MISSING
                  else (f.name, f.type) for f in FIELDS], frozen=True, slots=True)


def test_init_takes_the_fields_in_order_with_their_defaults() -> None:
    parameters = list(inspect.signature(JobEvent.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in FIELDS]
    assert [p.default for p in parameters] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        for f in FIELDS]


@pytest.mark.parametrize("args, kwargs", [
    ((EventKind.STARTED, "t", "noop", "j1", 1), {"waited": 0.25, "trace": "00-ab-cd-01"}),
    ((EventKind.COMPLETED, "t", "noop", "j1", 2, 0.5, OutcomeKind.DONE, "", ("completed",)),
     {}),
    ((EventKind.STALE, "t\n", "x", "j", 3), {"outcome": OutcomeKind.RETRY,
                                               "reason": "lease taken",
                                               "counters": ("stale",)}),
])
def test_same_event_as_the_generated_init(args: tuple[object, ...],
                                          kwargs: dict[str, object]) -> None:
    event = JobEvent(*args, **kwargs)  # type: ignore[arg-type]
    reference = Generated(*args, **kwargs)
    assert dataclasses.astuple(event) == dataclasses.astuple(reference)
    assert event == JobEvent(*args, **kwargs)  # type: ignore[arg-type]
    assert hash(event) == hash(JobEvent(*args, **kwargs))  # type: ignore[arg-type]
    assert repr(event).split("(", 1)[1] == repr(reference).split("(", 1)[1]


def test_event_stays_frozen() -> None:
    event = JobEvent(EventKind.STARTED, "t", "noop", "j1", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.reason = "changed"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_emit_reaches_own_then_parent_subscribers_and_logs_a_failure_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = EventStream()
    middle = EventStream(parent=root)
    leaf = EventStream(parent=middle)
    seen: list[tuple[str, str]] = []

    def broken(event: JobEvent) -> None:
        raise RuntimeError("subscriber bug")

    leaf.subscribe(lambda e: seen.append(("leaf", e.job_id)))
    middle.subscribe(broken)
    middle.subscribe(lambda e: seen.append(("middle", e.job_id)))
    root.subscribe(lambda e: seen.append(("root", e.job_id)))
    with caplog.at_level(logging.ERROR, logger="quick_queue.worker"):
        for job_id in ("a", "b"):
            leaf.emit(JobEvent(EventKind.STARTED, "t", "noop", job_id, 1))
    assert seen == [("leaf", "a"), ("middle", "a"), ("root", "a"),
                    ("leaf", "b"), ("middle", "b"), ("root", "b")]
    failures = [r for r in caplog.records if "failed (logged once)" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
