"""Hooks a tracer plugs into; nothing here imports a tracing library.

``on_enqueue`` is None unless tracing was switched on (``quick_queue.otel.instrument``): the
producer then pays one global read per job and the stored record carries no trace field. When
set, it is called once per job made (``enqueue``, ``enqueue_many``), with the job's tenant, topic
and id, and returns the W3C ``traceparent`` the job carries into the store (or None), so the
worker that runs it can make each attempt's span a child of the span that enqueued it.
"""

from __future__ import annotations

from collections.abc import Callable

#: (tenant, topic, job_id) -> traceparent or None; see the module docstring
EnqueueHook = Callable[[str, str, str], "str | None"]

on_enqueue: EnqueueHook | None = None

# What a traceparent adds to a stored record at most ('"tp":"00-<32>-<16>-<2>"' and a comma;
# the producer keeps that much room free when a job carries one).
TRACE_ROOM = 64
