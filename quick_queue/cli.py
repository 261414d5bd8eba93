"""``quick-queue``: inspect a queue, run workers, enqueue and fix jobs from the shell.

Every command takes ``--db URL`` (or the ``QUICK_QUEUE_URL`` environment variable) and
``--queue NAME`` (default ``default``). The read commands (``inspect ...``) read the store only,
never live workers, so they work the same while workers run and when none do; ``--json`` (or
``-o json``) prints stable field names instead of tables.

Bad input ends with one ``error: ...`` line on stderr and a non-zero exit status: 2 for input
that cannot work (a bad URL, payload, duration or MODULE:ATTR), 1 for things that are not there
or not reachable (a missing database file, an unknown tenant or job, FoundationDB), 130 on
Ctrl-C. ``QUICK_QUEUE_DEBUG=1`` shows the traceback of an unexpected error instead.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import RenderableType
from rich.live import Live
from typer.core import TyperGroup

from quick_queue import cli_views as views
from quick_queue import read_model as views_data
from quick_queue.cli_support import (
    URL_ENV,
    console,
    emit,
    fail,
    find_job,
    json_wanted,
    load_queue,
    parse_duration,
    parse_payload,
    queue_for,
    reporting_errors,
    setup_logging,
)
from quick_queue.kv import open as open_db
from quick_queue.models import to_datetime, to_us
from quick_queue.queue import JobQueue

DEFAULT_WATCH = 2.0


class _InspectGroup(TyperGroup):
    """Lets ``--watch`` take its seconds optionally: ``inspect --watch`` means every 2 s."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            fixed.append(arg)
            if arg in ("--watch", "-w"):
                following = args[i + 1] if i + 1 < len(args) else ""
                try:
                    float(following)
                except ValueError:
                    fixed.append(str(DEFAULT_WATCH))
        result: list[str] = super().parse_args(ctx, fixed)
        return result


app = typer.Typer(
    name="quick-queue", no_args_is_help=True, rich_markup_mode=None, add_completion=False,
    pretty_exceptions_enable=False,
    help="A QuiCK-style job queue: inspect queues, run workers, enqueue and fix jobs.",
)
inspect_app = typer.Typer(
    cls=_InspectGroup, invoke_without_command=True, rich_markup_mode=None,
    help="Show what is in the queue. Without a subcommand: an overview of the zones with jobs, "
         "depth per state, the oldest due job's wait, leases about to end and per-topic "
         "counters. Reads the store only, so it is safe while workers run.",
)
app.add_typer(inspect_app, name="inspect")

Db = Annotated[str | None, typer.Option(
    "--db", envvar=URL_ENV, show_envvar=True, metavar="URL",
    help="Database URL: sqlite:///path.db, sqlite:////abs/path.db, fdb://, "
         "fdb:///path/to/fdb.cluster, memory://",
)]
QueueName = Annotated[str | None, typer.Option(
    "--queue", metavar="NAME", help="Queue name inside the database [default: default]",
)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (stable field names).")]
Output = Annotated[str | None, typer.Option(
    "--output", "-o", metavar="FORMAT", help="table (default) or json",
)]


# -- inspect -----------------------------------------------------------------------------------
@inspect_app.callback()
def inspect_overview(
    ctx: typer.Context,
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    watch: Annotated[float | None, typer.Option(
        "--watch", "-w", metavar="[SECONDS]",
        help=f"Refresh every SECONDS (default {DEFAULT_WATCH:g}) until Ctrl-C.",
    )] = None,
    zones: Annotated[int, typer.Option(
        "--zones", metavar="N", help="Show the N deepest zones.")] = 20,
    lease_window: Annotated[float, typer.Option(
        "--lease-window", metavar="SECONDS",
        help="List leases ending within this many seconds.")] = views_data.LEASE_WINDOW,
) -> None:
    """Overview: zones with jobs, depth per state, the oldest due job's wait, leases about to
    end, per-topic counters. Subcommands show one zone, one job or the dead letters."""
    ctx.obj = {"db": db, "queue": queue, "json": as_json, "output": output}
    if ctx.invoked_subcommand is not None:
        if watch is not None:
            with reporting_errors():
                fail("--watch works with the overview only (quick-queue inspect --watch)", 2)
        return
    with reporting_errors():
        want_json = json_wanted(as_json, output)
        if watch is not None and watch <= 0:
            fail("--watch needs a number of seconds > 0", 2)
        with queue_for(db, queue) as q:
            url = q.db.url or str(db)

            def read() -> views_data.Overview:
                return views_data.overview(q, q.name, lease_window, zone_limit=zones)

            def data() -> dict[str, Any]:
                return read().to_dict()

            def render() -> RenderableType:
                return views.overview(read(), url)

            if watch is None:
                if want_json:
                    typer.echo(views.to_json(data()))
                else:
                    console().print(render())
            else:
                watch_loop(watch, render, data if want_json else None)


def watch_loop(interval: float, render: Callable[[], RenderableType],
               data: Callable[[], dict[str, Any]] | None) -> None:
    """Redraw until Ctrl-C (or SIGTERM), then exit 0. With JSON: one object per line."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if data is not None:
            while True:
                typer.echo(json.dumps(data()))
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


def sub_options(ctx: typer.Context, db: str | None, queue: str | None, as_json: bool,
                output: str | None) -> tuple[str | None, str | None, bool]:
    """Options given after the subcommand win over those given before it."""
    parent = ctx.obj or {}
    db = db or parent.get("db")
    queue = queue or parent.get("queue")
    want_json = json_wanted(as_json or parent.get("json", False),
                            output or parent.get("output"))
    return db, queue, want_json


@inspect_app.command("zone")
def inspect_zone(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="The tenant whose zone to show.")],
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N",
                                       help="Jobs listed per state.")] = 20,
) -> None:
    """One tenant's zone: depth per state and its jobs in the order they will run."""
    with reporting_errors():
        db, queue, want_json = sub_options(ctx, db, queue, as_json, output)
        with queue_for(db, queue) as q:
            now = q.clock.now()
            zone = views_data.zone_view(q, tenant, now=now)
            dead = views_data.count_dead(q, tenant)
            if zone.pointer_due is None and not zone.jobs and not dead:
                fail(f"unknown tenant {tenant!r}: queue {q.name!r} has no jobs and no dead "
                     "letters for it")
            jobs = views_data.zone_jobs(q, tenant, limit)
            data = {**zone.to_dict(), "dead": dead,
                    "jobs": [j.to_dict() for state in ("ready", "scheduled", "leased")
                             for j in jobs[state]]}
            emit(data, lambda: views.zone_detail(zone, jobs, dead, to_datetime(to_us(now)),
                                                 limit), want_json)


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
        db, queue, want_json = sub_options(ctx, db, queue, as_json, output)
        with queue_for(db, queue) as q:
            job = find_job(q, tenant, job_id)
            now = to_datetime(to_us(q.clock.now()))
            emit(job.to_dict(), lambda: views.job_detail(job, now), want_json)


@inspect_app.command("dead")
def inspect_dead(
    ctx: typer.Context,
    db: Db = None,
    queue: QueueName = None,
    as_json: Json = False,
    output: Output = None,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="TENANT",
                                               help="Only this tenant's.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="Show at most N.")] = 50,
) -> None:
    """Dead letters: jobs that failed max_retries + 1 times, were discarded, or could not run
    (unknown topic, bad payload), with the reason."""
    with reporting_errors():
        db, queue, want_json = sub_options(ctx, db, queue, as_json, output)
        with queue_for(db, queue) as q:
            jobs = views_data.dead_letters(q, tenant, limit)
            total = views_data.count_dead(q, tenant)
            now = to_datetime(to_us(q.clock.now()))
            emit({"total": total, "jobs": [j.to_dict() for j in jobs]},
                 lambda: views.dead_table(jobs, total, now), want_json)


# -- producing and fixing ----------------------------------------------------------------------
@app.command()
def enqueue(
    topic: Annotated[str, typer.Argument(help="The job's topic (its handler's @job topic).")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", metavar="TENANT",
                                               help="Whose job (required).")] = None,
    payload: Annotated[str, typer.Option("--payload", "-p", metavar="JSON",
                                         help="The payload, as JSON.")] = "{}",
    in_: Annotated[str | None, typer.Option(
        "--in", metavar="DURATION", help="Run later: 30, 90s, 5m, 2h, 1h30m.")] = None,
    priority: Annotated[int | None, typer.Option(
        "--priority", metavar="N", help="0..1000, lower runs first [default: 100].")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", metavar="KEY", help="Idempotency key: the same key gives the same job.")] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries", metavar="N")] = None,
    db: Db = None,
    queue: QueueName = None,
) -> None:
    """Add a job; prints its id. (The payload is checked against the topic's model when a
    worker runs it: a bad one becomes a dead letter with the reason.)"""
    with reporting_errors():
        if not tenant:
            fail("--tenant is required: whose job is it?", 2)
        data = parse_payload(payload)
        delay = parse_duration(in_) if in_ is not None else None
        with queue_for(db, queue, must_exist=False) as q:
            job_id = q.enqueue(tenant, topic, data, in_=delay, priority=priority,
                               max_retries=max_retries, key=key)
        typer.echo(job_id)


@app.command()
def retry(
    tenant: Annotated[str | None, typer.Argument(help="The dead letter's tenant.")] = None,
    job_id: Annotated[str | None, typer.Argument(help="The dead letter's job id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    only: Annotated[str | None, typer.Option(
        "--tenant", metavar="TENANT", help="With --all: only this tenant's.")] = None,
    db: Db = None,
    queue: QueueName = None,
) -> None:
    """Bring dead letters back as ready jobs with a fresh retry budget."""
    with reporting_errors():
        if all_ == bool(tenant and job_id) or (tenant and not job_id):
            fail("give TENANT JOB_ID, or --all [--tenant TENANT]", 2)
        with queue_for(db, queue) as q:
            if not all_:
                assert tenant is not None and job_id is not None
                if not q.retry_dead(tenant, job_id):
                    job = find_job(q, tenant, job_id)
                    fail(f"job {job_id} is {job.state}, not a dead letter; only dead letters "
                         "can be retried")
                typer.echo(f"retrying {tenant}/{job_id}: ready now")
                return
            revived = 0
            while True:
                page = q.dead_letters(only, 500)
                done = sum(q.retry_dead(job.tenant, job.job_id) for job in page)
                revived += done
                if len(page) < 500 or not done:
                    break
            typer.echo(f"retrying {revived} dead letter(s)" if revived else "no dead letters")


@app.command()
def purge(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="TENANT", help="Only this tenant's dead letters.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    db: Db = None,
    queue: QueueName = None,
) -> None:
    """Delete dead letters (all, or one tenant's)."""
    with reporting_errors():
        with queue_for(db, queue) as q:
            count = views_data.count_dead(q, tenant)
            whose = f" of tenant {tenant!r}" if tenant else ""
            if not count:
                typer.echo(f"no dead letters{whose}")
                return
            if not yes:
                typer.confirm(f"Delete {count} dead letter(s){whose}? This cannot be undone",
                              abort=True)
            typer.echo(f"purged {q.purge_dead(tenant)} dead letter(s){whose}")


@app.command()
def cancel(
    tenant: Annotated[str, typer.Argument(help="The job's tenant.")],
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    db: Db = None,
    queue: QueueName = None,
) -> None:
    """Remove a waiting or running job (a running job's completion is then ignored)."""
    with reporting_errors():
        with queue_for(db, queue) as q:
            job = find_job(q, tenant, job_id)
            if job.state == "dead":
                fail(f"job {job_id} is a dead letter; remove it with quick-queue purge "
                     f"--tenant {tenant}, or run it again with quick-queue retry")
            if not q.cancel(tenant, job_id):
                fail(f"job {job_id} finished before it could be cancelled")
            note = " (it was running: its result will be ignored)" if job.state == "leased" \
                else ""
            typer.echo(f"cancelled {tenant}/{job_id}, which was {job.state}{note}")


# -- worker ------------------------------------------------------------------------------------
@app.command()
def worker(
    ref: Annotated[str, typer.Argument(
        metavar="MODULE:ATTR", help="Where your JobQueue is, e.g. tutorial.shop:queue.")],
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", metavar="N", help="Jobs running at once per process.")] = 16,
    processes: Annotated[int, typer.Option(
        "--processes", "-p", metavar="N", help="Consumer processes.")] = 1,
    drain: Annotated[bool, typer.Option(
        "--drain", help="Run the jobs due now, then exit (instead of running until Ctrl-C).")
    ] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SECONDS", help="With --drain: give up after this long.")] = None,
    log_level: Annotated[str, typer.Option(
        "--log-level", metavar="LEVEL", help="info: one line per job state change.")] = "info",
    db: Annotated[str | None, typer.Option(
        "--db", metavar="URL", help=f"Use this database instead of the queue's own (also sets "
        f"${URL_ENV} before MODULE is imported).")] = None,
    queue: QueueName = None,
) -> None:
    """Run the handlers of the JobQueue at MODULE:ATTR until SIGINT/SIGTERM, which finish
    running jobs (up to shutdown_grace) and hand back the rest."""
    with reporting_errors():
        if concurrency < 1 or processes < 1:
            fail("--concurrency and --processes must be at least 1", 2)
        if drain and processes > 1:
            fail("--drain runs in one process; drop --processes", 2)
        setup_logging(log_level, processes)
        if db:
            os.environ[URL_ENV] = db
        q = load_queue(ref)
        if (db and q.db.url != db) or (queue and queue != q.name):
            q = JobQueue(open_db(db) if db and q.db.url != db else q.db, name=queue or q.name,
                         jobs=q.registry.handlers(), clock=q.clock, **q.settings.as_dict())
        topics = q.registry.topics()
        if not topics:
            fail(f"{ref} has no job handlers, so every job would be dead-lettered: pass "
                 "jobs=[...] to JobQueue or decorate handlers with @queue.job", 2)
        mode = "draining" if drain else "running"
        where = q.db.url or repr(q.db)
        typer.echo(f"worker {mode}: queue {q.name!r} on {where}, topics "
                   f"{', '.join(topics)}; concurrency {concurrency}"
                   + (f" x {processes} processes" if processes > 1 else "")
                   + ("" if drain else "; Ctrl-C to stop"), err=True)
        if drain:
            summary = q.drain(concurrency=concurrency, timeout=timeout)
            typer.echo(f"drained: {views.summary_line(summary)}", err=True)
            if summary.timed_out:
                fail(f"--timeout {timeout:g} s reached with jobs left" if timeout else
                     "timed out")
            return
        result = q.run(concurrency=concurrency, processes=processes)
        if result is not None:
            typer.echo(f"stopped: {views.summary_line(result)}", err=True)
        else:
            typer.echo("stopped", err=True)


def main(argv: list[str] | None = None) -> None:
    """The ``quick-queue`` console script."""
    app(args=argv, prog_name="quick-queue")


if __name__ == "__main__":
    main()
