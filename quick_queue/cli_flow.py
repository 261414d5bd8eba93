"""``quick-queue pause`` and ``quick-queue resume`` (issue 13): stop and restart a topic or a
tenant on every worker at once. The pause is a key in the store, so workers notice it within
one scan interval, without a restart; ``quick-queue inspect`` lists what is paused."""

from __future__ import annotations

from typing import Annotated

import typer

from quick_queue import cli_views as views
from quick_queue.cli_inspect import Db, QueueName
from quick_queue.cli_support import fail, queue_for, reporting_errors

Topic = Annotated[str | None, typer.Option("--topic", help="A topic, on every tenant.")]
Tenant = Annotated[str | None, typer.Option("--tenant", help="A tenant, every topic.")]


def _target(topic: str | None, tenant: str | None) -> tuple[str, str]:
    if (topic is None) == (tenant is None):
        fail("give exactly one of --topic or --tenant", 2)
    return ("topic", topic) if topic is not None else ("tenant", str(tenant))


def pause(topic: Topic = None, tenant: Tenant = None, db: Db = None,
          queue: QueueName = None) -> None:
    """Pause a topic or a tenant: its jobs stay queued (no attempt spent) and running ones
    finish; nothing of it starts until ``quick-queue resume``."""
    with reporting_errors():
        kind, name = _target(topic, tenant)
        with queue_for(db, queue) as q:
            done = q.pause(**{kind: name})
        typer.echo(f"paused {kind} {views.shown(name)}" if done
                   else f"{kind} {views.shown(name)} was already paused")


def resume(topic: Topic = None, tenant: Tenant = None, db: Db = None,
           queue: QueueName = None) -> None:
    """Resume a paused topic or tenant: its jobs run again, in their order."""
    with reporting_errors():
        kind, name = _target(topic, tenant)
        with queue_for(db, queue) as q:
            done = q.resume(**{kind: name})
        typer.echo(f"resumed {kind} {views.shown(name)}" if done
                   else f"{kind} {views.shown(name)} was not paused")
