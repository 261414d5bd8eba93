"""Typed producers (issue 12): enqueueing through the handler class lets mypy check the payload
(tests/typecheck, checked here through mypy's API), and works at run time with the class's own
options, registered or not; string topics keep working."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

import quick_queue as qq

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typecheck"


def _mypy(path: Path, cache: Path) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run([
        "--strict", "--no-error-summary", "--cache-dir", str(cache), "--follow-imports",
        "silent", str(path),
    ])
    return out + err, status


def test_mypy_accepts_right_payloads_and_rejects_wrong_ones(tmp_path: Path) -> None:
    out, status = _mypy(TYPING / "producers_ok.py", tmp_path / "cache")
    assert status == 0, out
    out, status = _mypy(TYPING / "producers_bad.py", tmp_path / "cache")
    assert status == 1
    bad_lines = {
        i for i, line in enumerate((TYPING / "producers_bad.py").read_text().splitlines(), 1)
        if "# error" in line
    }
    flagged = {int(m) for m in re.findall(r"producers_bad\.py:(\d+): error", out)}
    assert flagged == bad_lines, out


class Order(pydantic.BaseModel):
    item: str
    cups: int = 1


@qq.job(topic="till:order", priority=7, max_retries=2)
class TakeOrder:
    Payload = Order

    def perform(self, payload: Order, meta: qq.JobMeta) -> None:
        return None


class NotAJob:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def test_enqueue_by_class_uses_its_topic_and_options(
    make_queue: Callable[..., qq.JobQueue],
) -> None:
    queue = make_queue()  # the handler is not registered here: its class says it all
    job_id = queue.enqueue("shop", TakeOrder, Order(item="latte", cups=2))
    info = queue.get_job("shop", job_id)
    assert info is not None
    assert (info.topic, info.priority, info.max_retries, info.payload) == (
        "till:order", 7, 2, {"item": "latte", "cups": 2})
    with pytest.raises(qq.PayloadError, match="till:order"):
        queue.enqueue("shop", TakeOrder, {"cups": 1})  # type: ignore[misc]
    many = queue.enqueue_many([{"tenant": "shop", "topic": TakeOrder,
                                "payload": Order(item="mocha")}])
    assert queue.get_job("shop", many[0]) is not None


def test_enqueue_by_a_class_without_job_is_refused(
    make_queue: Callable[..., qq.JobQueue],
) -> None:
    queue = make_queue()
    with pytest.raises(qq.HandlerError, match="not decorated with @job"):
        queue.enqueue("shop", NotAJob, {})
