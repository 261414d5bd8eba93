"""OpenTelemetry: an enqueue span per job, an attempt span per run, parent and child through the
traceparent stored in the job (the ``otel`` extra)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq
from quick_queue import tracing
from quick_queue.models import JobRecord
from tests.conftest import QueueFactory

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra: pip install .[otel]")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from quick_queue import otel

ROOT = Path(__file__).resolve().parents[2]


SEEN: list[int] = []  # the span id current while a handler ran


@qq.job(topic="o:ok")
class Ok:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        # spans the handler starts become children of this one
        SEEN.append(trace.get_current_span().get_span_context().span_id)


@qq.job(topic="o:async")
class AsyncOk:
    async def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        SEEN.append(trace.get_current_span().get_span_context().span_id)


@qq.job(topic="o:fail", max_retries=1)
class Fail:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    tracing.on_enqueue = None  # never leak the hook into other tests


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_the_attempt_span_is_a_child_of_the_enqueue_span(
    make_queue: QueueFactory, spans: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = spans
    SEEN.clear()  # (the test runs once per engine in one process)
    # the handler's own tracer is the global one: point it at the test's provider
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: provider.get_tracer(*a[:1]))
    queue = make_queue(Ok)
    traced = otel.instrument(queue, tracer_provider=provider)
    with provider.get_tracer("app").start_as_current_span("request") as request:
        job_id = queue.enqueue("acme", "o:ok", {})
    assert queue.drain(timeout=10).completed == 1
    traced.close()
    done = tuple(exporter.get_finished_spans())
    (enqueue,) = _named(done, "enqueue o:ok")
    (attempt,) = _named(done, "process o:ok")
    assert enqueue.kind is SpanKind.PRODUCER and attempt.kind is SpanKind.CONSUMER
    # request > enqueue > attempt (current while the handler ran): one trace
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert attempt.parent is not None and attempt.parent.span_id == enqueue.context.span_id
    assert attempt.context.trace_id == enqueue.context.trace_id
    assert SEEN == [attempt.context.span_id]
    assert attempt.attributes is not None and attempt.attributes["messaging.message.id"] == job_id
    assert attempt.attributes["quick_queue.outcome"] == "completed"


def test_an_async_handler_runs_inside_its_own_attempt_span(
    make_queue: QueueFactory, spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    SEEN.clear()
    queue = make_queue(AsyncOk)
    traced = otel.instrument(queue, tracer_provider=provider)
    for n in range(4):  # several at once on one loop: each task sees its own span
        queue.enqueue("acme", "o:async", {"n": n})
    assert queue.drain(timeout=10).completed == 4
    traced.close()
    attempts = _named(tuple(exporter.get_finished_spans()), "process o:async")
    assert sorted(SEEN) == sorted(a.context.span_id for a in attempts) and len(SEEN) == 4


def test_every_attempt_gets_a_span_and_a_failed_one_says_why(
    make_queue: QueueFactory, spans: tuple[TracerProvider, InMemorySpanExporter],
    clock: qq.ManualClock,
) -> None:
    provider, exporter = spans
    queue = make_queue(Fail)
    traced = otel.instrument(queue, tracer_provider=provider)
    queue.enqueue("acme", "o:fail", {})
    queue.drain(timeout=10)
    clock.advance(3600)  # past the retry's backoff
    assert queue.drain(timeout=10).dead == 1
    traced.close()
    done = tuple(exporter.get_finished_spans())
    (enqueue,) = _named(done, "enqueue o:fail")
    attempts = _named(done, "process o:fail")
    assert [a.attributes["quick_queue.attempt"] for a in attempts if a.attributes] == [1, 2]
    assert [a.attributes["quick_queue.outcome"] for a in attempts if a.attributes] == [
        "retried", "dead"]
    assert all(a.parent is not None and a.parent.span_id == enqueue.context.span_id
               for a in attempts)
    assert all(a.status.status_code is StatusCode.ERROR and "boom" in (a.status.description or "")
               for a in attempts)


def test_without_tracing_the_stored_job_carries_no_trace_field(make_queue: QueueFactory) -> None:
    queue = make_queue(Ok)
    job_id = queue.enqueue("acme", "o:ok", {})
    raw = queue.db.transact(lambda tr: tr.get(queue.layout.zone("acme").item(job_id)))
    assert raw is not None and b'"tp"' not in raw
    assert JobRecord.decode(job_id, raw).trace is None


def test_the_trace_crosses_processes_through_the_store(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    url = f"sqlite:///{tmp_path}/traced.db"
    producer = textwrap.dedent(f"""
        import quick_queue as qq
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from quick_queue import otel
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        queue = qq.JobQueue(qq.open({url!r}), jobs=[])
        otel.instrument(queue, tracer_provider=provider)
        queue.enqueue("acme", "o:ok", {{}})
        (span,) = exporter.get_finished_spans()
        print(f"{{span.context.trace_id:032x}} {{span.context.span_id:016x}}")
    """)
    out = subprocess.run([sys.executable, "-c", producer], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    trace_id, span_id = int(out[0], 16), int(out[1], 16)
    provider, exporter = spans
    db = qq.open(url)
    try:
        queue = qq.JobQueue(db, jobs=[Ok])
        traced = otel.instrument(queue, tracer_provider=provider)
        assert queue.drain(timeout=10).completed == 1
        traced.close()
    finally:
        db.close()
    (attempt,) = _named(tuple(exporter.get_finished_spans()), "process o:ok")
    assert attempt.context.trace_id == trace_id
    assert attempt.parent is not None and attempt.parent.span_id == span_id


def test_a_traced_job_keeps_room_for_its_trace_context(
    make_queue: QueueFactory, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from quick_queue.models import RUNTIME_ROOM, VALUE_LIMIT, record_overhead

    queue = make_queue(Ok)
    largest = "x" * (VALUE_LIMIT - RUNTIME_ROOM - record_overhead("o:ok", None) - 2)
    queue.enqueue("acme", "o:ok", largest)  # untraced: exactly at the limit
    traced = otel.instrument(queue, tracer_provider=spans[0])
    try:
        with pytest.raises(qq.PayloadError, match="at most"):
            queue.enqueue("acme", "o:ok", largest)
        queue.enqueue("acme", "o:ok", largest[: -tracing.TRACE_ROOM])
    finally:
        traced.close()
    assert tracing.on_enqueue is None
