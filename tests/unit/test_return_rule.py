"""The return rule of ``perform``, exactly as ``jobs.interpret`` states it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

import quick_queue as qq
from quick_queue.jobs import DONE_VALUES, interpret, spec_of


@qq.job(topic="rule")
class Rule:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


class Model(pydantic.BaseModel):
    x: int = 1


class Text(str):
    pass


SPEC = spec_of(Rule)


@pytest.mark.parametrize(
    "value", [None, "s", Text("t"), 0, 1.5, True, [1], (1, 2), {"a": 1}, Model(), qq.Ok(3)]
)
def test_done_values(value: Any) -> None:
    assert isinstance(interpret(value, SPEC), qq.Ok)


@pytest.mark.parametrize(
    "value", [{1, 2}, datetime.now(UTC), object(), b"bytes", frozenset(), 1j]
)
def test_anything_else_is_a_failed_attempt_naming_the_handler(value: Any) -> None:
    verdict = interpret(value, SPEC)
    assert isinstance(verdict, qq.Error)
    assert "Rule" in verdict.reason and type(value).__name__ in verdict.reason


def test_exceptions_coroutines_and_generators_fail_the_attempt() -> None:
    assert interpret(ValueError("no"), SPEC) == qq.Error("ValueError: no")
    gen = (i for i in range(1))
    verdict = interpret(gen, SPEC)
    assert isinstance(verdict, qq.Error) and "synchronous" in verdict.reason


def test_results_pass_through_and_the_rule_is_documented() -> None:
    for result in (qq.Error("e"), qq.Snooze(1), qq.Discard("d")):
        assert interpret(result, SPEC) is result
    doc = " ".join((interpret.__doc__ or "").split())
    for cls in DONE_VALUES:
        name = "pydantic model" if cls is pydantic.BaseModel else cls.__name__
        assert name in doc, name
