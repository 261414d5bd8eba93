"""Pause and resume from the dashboard (flow control, ``JobQueue.pause``/``resume``/``paused``).

``GET /api/v1/paused`` reads the shared snapshot (no extra store read per open page);
``POST /api/v1/pause`` and ``/resume`` take ``{"topic": ...}`` or ``{"tenant": ...}`` and need
the token (or a signed-in page's CSRF token) like every other action. Workers notice within
one scan interval.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Request

from quick_queue.queue import JobQueue
from quick_queue.web.models import ActionResult, Paused, PauseTarget
from quick_queue.web.security import Guard
from quick_queue.web.snapshot import Snapshots


def add_flow_routes(app: FastAPI, api: str, queue: JobQueue, snapshots: Snapshots,
                    guard: Guard, errors: dict[int | str, dict[str, object]]) -> None:
    @app.get(f"{api}/paused", response_model=Paused, responses=errors)
    def paused() -> Paused:
        """What is paused: tenants whose zones are parked and topics whose jobs are set
        aside (both keep their jobs until resumed)."""
        found = snapshots.get().overview.flow.paused
        return Paused(tenant=sorted(found.get("tenant", [])),
                      topic=sorted(found.get("topic", [])))

    @app.post(f"{api}/pause", response_model=ActionResult, responses=errors)
    def pause(request: Request, target: Annotated[PauseTarget, Body()]) -> ActionResult:
        """Stop starting jobs of a topic or a tenant (needs the token). Jobs stay queued;
        attempts already running finish."""
        guard.require(request)
        _check_topic(queue, target)
        changed = queue.pause(topic=target.topic, tenant=target.tenant)
        snapshots.invalidate()
        what = _describe(target)
        return ActionResult(ok=True, message=f"paused {what}" if changed
                            else f"{what} was already paused")

    @app.post(f"{api}/resume", response_model=ActionResult, responses=errors)
    def resume(request: Request, target: Annotated[PauseTarget, Body()]) -> ActionResult:
        """Start a paused topic's or tenant's jobs again, in their order (needs the token)."""
        guard.require(request)
        changed = queue.resume(topic=target.topic, tenant=target.tenant)
        snapshots.invalidate()
        what = _describe(target)
        return ActionResult(ok=True, message=f"resumed {what}" if changed
                            else f"{what} was not paused")


def _check_topic(queue: JobQueue, target: PauseTarget) -> None:
    # as for enqueue: a server that knows the handlers refuses a topic none of them has (a
    # typo would otherwise pause nothing, silently); resume accepts any, to undo old pauses
    topics = queue.registry.topics()
    if target.topic is not None and topics and target.topic not in topics:
        raise HTTPException(422, f"unknown topic {target.topic!r}: this server knows "
                            f"{', '.join(sorted(topics))}")


def _describe(target: PauseTarget) -> str:
    return f"topic {target.topic!r}" if target.topic is not None else f"tenant {target.tenant!r}"
