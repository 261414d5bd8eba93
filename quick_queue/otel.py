"""OpenTelemetry tracing (the optional ``otel`` extra: ``pip install "quick-queue-zones[otel]"``).

``instrument(queue)`` switches on, for this process:

- an **enqueue span** (kind PRODUCER, ``enqueue {topic}``) per job made by ``enqueue`` or
  ``enqueue_many``, a child of whatever span is current. It marks the job's creation (the
  messaging conventions' "create" span: one per job, also inside a batch); the transaction that
  writes the job is the caller's. Its W3C ``traceparent`` is stored in the job record (the
  header's ``tp`` field, about 60 bytes, written only for traced jobs);
- an **attempt span** (kind CONSUMER, ``process {topic}``) per attempt run by this process's
  consumers of ``queue``, whose parent is the job's enqueue span, read back from the stored job,
  so the trace crosses processes and machines. It starts when the handler starts and ends when
  its outcome is settled; its attributes give the outcome, and a failed attempt's status is
  ERROR with the error. A lease lost meanwhile is a span event.

While a handler runs, its attempt span is the current span, so spans the handler starts (and
jobs it enqueues) are its children: for a plain (``def``) handler in its worker thread, and for
an ``async def`` one in its task (the worker thread hands the run to the event loop with
``call_soon_threadsafe``, which carries the thread's context, span included, into the task).

Call ``instrument`` where the queue is made (the app module ``quick-queue worker`` imports):
then every process that imports it, producers and each worker process, traces. (Processes
forked by ``run(processes=N)`` inherit the hook and the subscription; spawned ones, on
FoundationDB, get them by importing the module.) The spans go to ``tracer_provider`` (default:
the global one): configure the SDK and its exporter as usual.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from quick_queue import tracing
from quick_queue.events import EventKind, EventStream, JobEvent

SYSTEM = "quick_queue"
_PROPAGATOR = TraceContextTextMapPropagator()
# Outcomes whose attempt failed: the span's status is ERROR with the event's reason.
_FAILED = frozenset({EventKind.RETRIED, EventKind.DEAD})
# Events that are not the end of an attempt.
_NOT_END = frozenset({EventKind.STARTED, EventKind.LEASE_LOST})


class HasEvents(Protocol):
    """A ``JobQueue`` or a ``QueueContext``: what has a queue's event stream."""

    @property
    def events(self) -> EventStream: ...


@dataclass
class Tracing:
    """What ``instrument`` switched on; ``close()`` switches it off."""

    tracer: trace.Tracer
    stream: EventStream
    open_spans: dict[tuple[str, str, int], Span] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_enqueue(self, tenant: str, topic: str, job_id: str) -> str | None:
        span = self.tracer.start_span(
            f"enqueue {topic}", kind=SpanKind.PRODUCER, attributes=_attributes(
                "create", tenant, topic, job_id))
        try:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
            return carrier.get("traceparent")
        finally:
            span.end()

    def on_event(self, event: JobEvent) -> None:
        key = (event.tenant, event.job_id, event.attempt)
        if event.kind is EventKind.STARTED:
            self._start(key, event)
            return
        with self.lock:
            span = self.open_spans.get(key) if event.kind in _NOT_END else (
                self.open_spans.pop(key, None))
        if span is None:  # a job that never started here (handed back, or dead unrun)
            return
        if event.kind is EventKind.LEASE_LOST:
            span.add_event("lease_lost", {"reason": event.reason})
            return
        span.set_attribute("quick_queue.outcome", event.kind.value)
        if event.kind in _FAILED:
            span.set_status(Status(StatusCode.ERROR, event.reason))
        elif event.reason:
            span.set_attribute("quick_queue.reason", event.reason)
        span.end()

    def _start(self, key: tuple[str, str, int], event: JobEvent) -> None:
        parent = (
            _PROPAGATOR.extract({"traceparent": event.trace}) if event.trace is not None
            else None
        )
        attributes = _attributes("process", event.tenant, event.topic, event.job_id)
        attributes["quick_queue.attempt"] = event.attempt
        span = self.tracer.start_span(f"process {event.topic}", context=parent,
                                      kind=SpanKind.CONSUMER, attributes=attributes)
        with self.lock:
            self.open_spans[key] = span
        # STARTED is emitted on the worker thread that is about to call a plain handler: the
        # span becomes that thread's current one (the next job's start replaces it; a worker
        # thread runs no other code that starts spans, so nothing needs detaching).
        otel_context.attach(trace.set_span_in_context(span))

    def close(self) -> None:
        """Stop tracing: no more enqueue or attempt spans (spans still open are ended)."""
        if tracing.on_enqueue == self.on_enqueue:
            tracing.on_enqueue = None
        self.stream.unsubscribe(self.on_event)
        with self.lock:
            spans, self.open_spans = list(self.open_spans.values()), {}
        for span in spans:
            span.end()


def _attributes(operation: str, tenant: str, topic: str, job_id: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        "messaging.message.id": job_id,
        "quick_queue.tenant": tenant,
    }


def instrument(queue: HasEvents, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Trace enqueues made in this process and the attempts ``queue``'s consumers run here
    (see the module docstring). ``tracer_provider``: the SDK's provider (default: the global
    one). Returns the ``Tracing``; ``.close()`` switches it off."""
    tracer = trace.get_tracer("quick_queue", tracer_provider=tracer_provider)
    state = Tracing(tracer, queue.events)
    tracing.on_enqueue = state.on_enqueue
    queue.events.subscribe(state.on_event)
    return state
