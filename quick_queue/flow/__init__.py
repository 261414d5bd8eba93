"""Flow control kept in the store (DESIGN.md §8, issue 13): periodic schedules without a
leader, and pauses of a tenant or a topic.

The keys live in one small range of the queue (``flow/``, see ``quick_queue.keys``); every
consumer reads that range at most once per scan interval (``flow.view``). The functions here
are what ``JobQueue.periodic``, ``pause``, ``resume`` and the CLI call; they take a
``QueueContext`` (or anything with its ``db``, ``layout``, ``registry`` and ``settings``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from quick_queue.context import QueueContext
from quick_queue.core import caps, pauses, periodic, rates
from quick_queue.errors import InvalidArgument
from quick_queue.flow.schedule import Schedule
from quick_queue.flow.summary import FlowSummary, ScheduleInfo, read_flow
from quick_queue.jobs import MAX_RUNNING
from quick_queue.models import to_us
from quick_queue.producer import Producer

RELEASE_BATCH = 500  # set-aside jobs put back per transaction on resume


def define(
    context: QueueContext, name: str, *, tenant: str, topic: str, payload: Any = None,
    cron: str | None = None, every: float | timedelta | None = None, tz: str | None = None,
    missed: str = "skip",
) -> Schedule:
    """Create or change schedule ``name``; its first tick is the first one after now."""
    schedule = Schedule.build(name, tenant=tenant, topic=topic, payload=payload, cron=cron,
                              every=every, tz=tz, missed=missed)
    now = context.db.store_time()
    # The job each tick enqueues, checked and encoded once here, with this queue's handler
    # (its payload model, priority and retries): the workers that tick it need no handler.
    job = Producer(context.registry, context.settings).new_job(
        tenant, topic, payload, now, key=schedule.job_key(0)
    )
    schedule = replace(schedule, payload=json.loads(job.payload), priority=job.priority,
                       max_retries=job.max_retries)
    first = schedule.after(to_us(now))
    context.db.transact(periodic.put_schedule, context.layout, name, schedule.encode(), first)
    return schedule


def remove(context: QueueContext, name: str) -> bool:
    return bool(context.db.transact(periodic.remove_schedule, context.layout, name))


def schedules(context: QueueContext) -> list[ScheduleInfo]:
    return read_flow(context.db, context.layout).schedules


def set_weight(context: QueueContext, tenant: str, weight: float) -> None:
    """Give ``tenant`` a weight (1 by default): under contention, zones are visited and
    served in proportion to their weights; a tenant alone still gets every worker."""
    if not isinstance(tenant, str) or not tenant:
        raise InvalidArgument(f"tenant must be a non-empty string, got {tenant!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
            or not 0.01 <= weight <= 1000:
        raise InvalidArgument(f"a weight is a number from 0.01 to 1000, got {weight!r}")
    context.db.transact(pauses.set_weight, context.layout, tenant, float(weight))


def _name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} must be a non-empty string, got {name!r}")
    return name


def _limit(limit: object) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_RUNNING):
        raise InvalidArgument(
            f"max_running is a whole number from 1 to {MAX_RUNNING}, got {limit!r}")
    return limit


def set_max_running(context: QueueContext, topic: str, limit: int | None) -> None:
    """At most ``limit`` attempts of ``topic`` run at once on every worker together (None:
    no cap). While set, it wins over the handler's ``@job(max_running=...)``."""
    context.db.transact(caps.set_cap, context.layout, _name("topic", topic), _limit(limit))


def set_tenant_max_running(context: QueueContext, tenant: str, limit: int | None) -> None:
    """At most ``limit`` attempts of ``tenant`` (any topic) run at once (None: no cap)."""
    context.db.transact(caps.set_cap, context.layout, _name("tenant", tenant), _limit(limit),
                        caps.TENANT)


def set_rate_limit(context: QueueContext, topic: str, rate: str | None) -> None:
    """At most ``rate`` ("100/s", "30/min", "5/h") leases of ``topic`` across every worker,
    evenly spaced (None removes the limit). While set, it wins over the handler's
    ``@job(rate_limit=...)``."""
    interval = None if rate is None else rates.parse_rate(rate)
    context.db.transact(rates.set_rate, context.layout, _name("topic", topic), interval)


def set_tenant_rate_limit(context: QueueContext, tenant: str, rate: str | None) -> None:
    """At most ``rate`` leases of ``tenant``'s jobs (any topic) across every worker."""
    interval = None if rate is None else rates.parse_rate(rate)
    context.db.transact(rates.set_rate, context.layout, _name("tenant", tenant), interval,
                        rates.TENANT)


def _target(topic: str | None, tenant: str | None) -> tuple[str, str]:
    if (topic is None) == (tenant is None):
        raise InvalidArgument("give exactly one of topic= or tenant=")
    kind, name = ("topic", topic) if topic is not None else ("tenant", tenant)
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{kind}= must be a non-empty string, got {name!r}")
    return kind, name


def pause(context: QueueContext, *, topic: str | None = None, tenant: str | None = None) -> bool:
    """Pause; False when it already was."""
    kind, name = _target(topic, tenant)
    return bool(context.db.transact(pauses.set_pause, context.layout, kind, name))


def resume(context: QueueContext, *, topic: str | None = None,
           tenant: str | None = None) -> bool:
    """Resume; False when it was not paused. Resuming a topic puts its set-aside jobs back
    in their place (in batches; calling it again finishes a resume that was interrupted)."""
    kind, name = _target(topic, tenant)
    now = to_us(context.db.store_time())
    was = bool(context.db.transact(pauses.clear_pause, context.layout, kind, name, now))
    if kind == "topic":
        # after the clear, so no worker sets more aside; also finishes an interrupted resume
        while context.db.transact(pauses.release_held, context.layout, name, now,
                                  RELEASE_BATCH) == RELEASE_BATCH:
            pass
    return was


def paused(context: QueueContext) -> dict[str, list[str]]:
    """{"tenant": [...], "topic": [...]}: what is paused."""
    return read_flow(context.db, context.layout).paused


__all__ = [
    "FlowSummary",
    "Schedule",
    "ScheduleInfo",
    "define",
    "pause",
    "paused",
    "read_flow",
    "remove",
    "resume",
    "schedules",
    "set_max_running",
    "set_rate_limit",
    "set_tenant_max_running",
    "set_tenant_rate_limit",
    "set_weight",
]
