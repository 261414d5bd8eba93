"""``quick-queue inspect``: the read commands (overview, one zone, one job, the dead letters,
the live workers), each optionally refreshed with ``--watch``. They open the store read-only
and read it through ``quick_queue.read_model``, the same functions ``JobQueue.stats()`` uses."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.live import Live
from typer.core import TyperCommand, TyperGroup

from quick_queue import cli_views as views
from quick_queue import live_workers, read_model
from quick_queue.cli_support import (
    URL_ENV,
    console,
    fail,
    find_job,
    json_wanted,
    queue_for,
    reporting_errors,
)
from quick_queue.models import to_datetime, to_us

DEFAULT_WATCH = 2.0


def _optional_seconds(args: list[str]) -> list[str]:
    """Lets ``--watch`` take its seconds optionally: ``--watch`` alone means every 2 s."""
    fixed: list[str] = []
    for i, arg in enumerate(args):
        fixed.append(arg)
        if arg in ("--watch", "-w"):
            following = args[i + 1] if i + 1 < len(args) else ""
            try:
                float(following)
            except ValueError:
                fixed.append(str(DEFAULT_WATCH))
    return fixed


class _InspectGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        result: list[str] = super().parse_args(ctx, _optional_seconds(args))
        return result


class _WatchCommand(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        result: list[str] = super().parse_args(ctx, _optional_seconds(args))
        return result


inspect_app = typer.Typer(
    cls=_InspectGroup, invoke_without_command=True, rich_markup_mode=None,
    help="Show what is in the queue. Without a subcommand: an overview of the zones with jobs, "
         "depth per state, the oldest due job's wait, leases about to end and per-topic "
         "counters. Reads the store only (opened read-only), so it is safe while workers run.",
)

Db = Annotated[str | None, typer.Option(
    "--db", envvar=URL_ENV, show_envvar=True, metavar="URL",
    help="Database URL: sqlite:///path.db, sqlite:////abs/path.db, fdb://, "
         "fdb:///path/to/fdb.cluster",
)]
QueueName = Annotated[str | None, typer.Option(
    "--queue", metavar="NAME", help="Queue name inside the database [default: default]",
)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]
Output = Annotated[str | None, typer.Option(
    "--output", "-o", metavar="FORMAT", help="table (default) or json",
)]
Watch = Annotated[float | None, typer.Option(
    "--watch", "-w", metavar="[SECONDS]",
    help=f"Refresh every SECONDS (default {DEFAULT_WATCH:g}) until Ctrl-C.",
)]


def watch_loop(interval: float, render: Callable[[], RenderableType],
               data: Callable[[], dict[str, Any]] | None) -> None:
    """Redraw until Ctrl-C (or SIGTERM), then exit 0. With JSON: one object per line."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if data is not None:
            while True:
                typer.echo(json.dumps(json.loads(views.to_json(data()))))
                time.sleep(interval)
        out = console()
        if not out.is_terminal:  # piped: one frame after another, like a log
            while True:
                out.print(render())
                out.print()
                out.file.flush()
                time.sleep(interval)
        with Live(render(), console=out, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        return
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def show(watch: float | None, want_json: bool, data: Callable[[], dict[str, Any]],
         render: Callable[[], RenderableType]) -> None:
    """Print once, or every ``watch`` seconds (each time read afresh) until Ctrl-C."""
    if watch is None:
        if want_json:
            typer.echo(views.to_json(data()))
        else:
            console().print(render())
        return
    if watch <= 0:
        fail("--watch needs a number of seconds > 0", 2)
    watch_loop(watch, render, data if want_json else None)


@inspect_app.callback()
def inspect_overview(
    ctx: typer.Context,
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    watch: Watch = None,
    zones: Annotated[int, typer.Option(
        "--zones", metavar="N", min=0, help="Show the N deepest zones.")] = 20,
    lease_window: Annotated[float, typer.Option(
        "--lease-window", metavar="SECONDS", min=0,
        help="List leases ending within this many seconds.")] = read_model.LEASE_WINDOW,
) -> None:
    """Overview: zones with jobs, depth per state, the oldest due job's wait, leases about to
    end, per-topic counters. Subcommands show one zone, one job or the dead letters."""
    ctx.obj = {"db": db, "queue": queue, "json": as_json, "output": output, "watch": watch}
    if ctx.invoked_subcommand is not None:
        return
    with reporting_errors():
        want_json = json_wanted(as_json, output)
        with queue_for(db, queue, read_only=True) as q:
            url = q.db.url or str(db)

            def read() -> read_model.Overview:
                return read_model.overview(q, q.name, lease_window, zone_limit=zones)

            show(watch, want_json, lambda: read().to_dict(), lambda: views.overview(read(), url))


def sub_options(ctx: typer.Context, db: str | None, queue: str | None, as_json: bool,
                output: str | None, watch: float | None = None
                ) -> tuple[str | None, str | None, bool, float | None]:
    """Options given after the subcommand win over those given before it."""
    parent = ctx.obj or {}
    db = db or parent.get("db")
    queue = queue or parent.get("queue")
    want_json = json_wanted(as_json or parent.get("json", False), output or parent.get("output"))
    return db, queue, want_json, watch if watch is not None else parent.get("watch")


@inspect_app.command("zone", cls=_WatchCommand)
def inspect_zone(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant whose zone to show.")],
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    watch: Watch = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1,
                                       help="Jobs listed per state.")] = 20,
) -> None:
    """One tenant's zone: depth per state and its jobs in the order they will run."""
    with reporting_errors():
        db, queue, want_json, watch = sub_options(ctx, db, queue, as_json, output, watch)
        with queue_for(db, queue, read_only=True) as q:

            def read() -> tuple[dict[str, Any], Callable[[], RenderableType]]:
                now = q.clock.now()
                zone = read_model.zone_view(q, tenant, now=now)
                dead = read_model.count_dead(q, tenant)
                if zone.pointer_due is None and not zone.jobs and not dead:
                    fail(f"unknown tenant {tenant!r}: queue {q.name!r} has no jobs and no "
                         "dead letters for it")
                jobs = read_model.zone_jobs(q, tenant, limit)
                data = {**zone.to_dict(), "dead": dead,
                        "jobs": [j.to_dict() for state in ("ready", "scheduled", "leased")
                                 for j in jobs[state]]}
                return data, lambda: views.zone_detail(zone, jobs, dead,
                                                       to_datetime(to_us(now)), limit)

            read()  # an unknown tenant fails before --watch starts
            show(watch, want_json, lambda: read()[0], lambda: read()[1]())


@inspect_app.command("job")
def inspect_job(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The job's tenant.")],
    job_id: Annotated[str, typer.Argument(help="The id enqueue printed.")],
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
) -> None:
    """One job: state, attempts, due time or lease, last error, payload."""
    with reporting_errors():
        db, queue, want_json, watch = sub_options(ctx, db, queue, as_json, output)
        if watch is not None:
            fail("--watch works with the overview, inspect zone and inspect dead; not with "
                 "inspect job", 2)
        with queue_for(db, queue, read_only=True) as q:
            job = find_job(q, tenant, job_id)
            now = to_datetime(to_us(q.clock.now()))
            show(None, want_json, job.to_dict, lambda: views.job_detail(job, now))


@inspect_app.command("dead", cls=_WatchCommand)
def inspect_dead(
    ctx: typer.Context,
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    watch: Watch = None,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="TENANT",
                                               help="Only this tenant's.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1,
                                       help="Show at most N.")] = 50,
) -> None:
    """Dead letters: jobs that failed max_retries + 1 times, were discarded, or could not run
    (unknown topic, bad payload), with the reason."""
    with reporting_errors():
        db, queue, want_json, watch = sub_options(ctx, db, queue, as_json, output, watch)
        with queue_for(db, queue, read_only=True) as q:

            def read() -> tuple[dict[str, Any], Callable[[], RenderableType]]:
                jobs = read_model.dead_letters(q, tenant, limit)
                total = read_model.count_dead(q, tenant)
                now = to_datetime(to_us(q.clock.now()))
                return ({"total": total, "jobs": [j.to_dict() for j in jobs]},
                        lambda: views.dead_table(jobs, total, now))

            show(watch, want_json, lambda: read()[0], lambda: read()[1]())


@inspect_app.command("workers", cls=_WatchCommand)
def inspect_workers(
    ctx: typer.Context,
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    watch: Watch = None,
) -> None:
    """Live workers: id, host, pid, when each started, its last heartbeat, its concurrency and
    the jobs it holds. A worker drops off when it stops or its heartbeat lapses."""
    with reporting_errors():
        db, queue, want_json, watch = sub_options(ctx, db, queue, as_json, output, watch)
        with queue_for(db, queue, read_only=True) as q:

            def read() -> tuple[dict[str, Any], Callable[[], RenderableType]]:
                now = q.db.store_time()  # heartbeats are in the store's time
                found = live_workers.workers(q, now=now)
                return ({"workers": [w.to_dict() for w in found]},
                        lambda: views.workers_table(found, now))

            show(watch, want_json, lambda: read()[0], lambda: read()[1]())
