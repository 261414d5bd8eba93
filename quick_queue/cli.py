"""``quick-queue``: inspect a queue, run workers, enqueue and fix jobs from the shell.

Every command takes ``--db URL`` (or the ``QUICK_QUEUE_URL`` environment variable) and
``--queue NAME`` (default ``default``). The read commands (``inspect ...``, in
``cli_inspect``) open the store read-only and never ask live workers, so they work the same
while workers run and when none do; ``--json`` (or ``-o json``) prints stable field names
instead of tables.

Every error, usage errors included, ends with one ``error: ...`` line on stderr and a non-zero
exit status: 2 for input that cannot work (a bad option, URL, payload, duration or
MODULE:ATTR), 1 for things that are not there or not reachable (a missing database file, an
unknown tenant or job, FoundationDB), 130 when a command other than the worker is interrupted
with Ctrl-C. A worker stopped by SIGINT or SIGTERM shuts down gracefully and exits 0.
``QUICK_QUEUE_DEBUG=1`` shows the traceback of an unexpected error instead.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from quick_queue import cli_views as views
from quick_queue import read_model
from quick_queue.cli_dashboard import apply_log_format, dashboard, start_worker_metrics
from quick_queue.cli_flow import pause, resume
from quick_queue.cli_inspect import Db, QueueName, inspect_app
from quick_queue.cli_support import (
    URL_ENV,
    USAGE_ERROR,
    confirm,
    describe_worker,
    fail,
    find_job,
    interrupted,
    load_queue,
    one_usage_line,
    parse_duration,
    parse_payload,
    queue_for,
    refuse_memory,
    reporting_errors,
    setup_logging,
)
from quick_queue.kv import open as open_db
from quick_queue.queue import JobQueue

#: The distribution's name on PyPI (``quick-queue`` there is an unrelated project); the import
#: name stays ``quick_queue`` and the command ``quick-queue``.
DISTRIBUTION = "quick-queue-zones"
#: Threads per worker process at most: each running job holds one, and past a few hundred a
#: process runs out of memory or thread slots before it runs out of work; scale out with -p.
MAX_CONCURRENCY = 512
MAX_PROCESSES = 256


class _App(TyperGroup):
    """Usage errors (an unknown option, a missing argument, a number out of range) come out as
    one ``error:`` line and exit status 2, like every other error. A Ctrl-C while the command
    line is parsed, or before or after a command's own ``reporting_errors``, ends as one there
    does (the CLI framework would end it with a bare 130, or "Aborted!" and 1 in older
    releases)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except USAGE_ERROR as error:
            raise one_usage_line(error) from None
        except KeyboardInterrupt:
            raise interrupted() from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except USAGE_ERROR as error:
            raise one_usage_line(error) from None
        except KeyboardInterrupt:
            raise interrupted() from None


app = typer.Typer(
    cls=_App, name="quick-queue", no_args_is_help=True, rich_markup_mode=None,
    add_completion=False, pretty_exceptions_enable=False,
    help="A QuiCK-style job queue: inspect queues, run workers, enqueue and fix jobs.",
)
app.add_typer(inspect_app, name="inspect")
app.command()(dashboard)
app.command()(pause)
app.command()(resume)


def version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e . in the checkout)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"quick-queue {version()} ({DISTRIBUTION})")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """A QuiCK-style job queue: inspect queues, run workers, enqueue and fix jobs."""


# -- producing and fixing ----------------------------------------------------------------------
@app.command()
def enqueue(
    topic: Annotated[str, typer.Argument(help="The job's topic (its handler's @job topic).")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", metavar="TENANT",
                                               help="Whose job (required).")] = None,
    payload: Annotated[str, typer.Option(
        "--payload", metavar="JSON|@FILE|-",
        help="The payload: a JSON object, @FILE to read it from a file, - from stdin.")] = "{}",
    in_: Annotated[str | None, typer.Option(
        "--in", metavar="DURATION", help="Run later: 30, 90s, 5m, 2h, 1h30m.")] = None,
    priority: Annotated[int | None, typer.Option(
        "--priority", metavar="N", help="0..1000, lower runs first [default: 100].")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", metavar="KEY", help="Idempotency key: while a job with this key exists for "
        "this tenant, enqueueing it again returns its id and adds nothing.")] = None,
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
                typer.echo(f"retrying {views.shown(tenant)}/{views.shown(job_id)}: ready now")
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
    tenant_arg: Annotated[str | None, typer.Argument(
        metavar="[TENANT]", help="With JOB_ID: delete this one dead letter.")] = None,
    job_id: Annotated[str | None, typer.Argument(
        metavar="[JOB_ID]", help="The dead letter's job id.")] = None,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="TENANT", help="Only this tenant's dead letters.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    db: Db = None,
    queue: QueueName = None,
) -> None:
    """Delete dead letters: one (TENANT JOB_ID), one tenant's (--tenant), or all."""
    with reporting_errors():
        if tenant_arg is not None and (job_id is None or tenant is not None):
            fail("give TENANT JOB_ID for one dead letter, or --tenant TENANT, or nothing for "
                 "all", 2)
        with queue_for(db, queue) as q:
            if tenant_arg is not None and job_id is not None:
                purge_one(q, tenant_arg, job_id)
                return
            count = read_model.count_dead(q, tenant)
            whose = f" of tenant {views.shown(tenant)!r}" if tenant else ""
            if not count:
                typer.echo(f"no dead letters{whose}")
                return
            if not yes:
                confirm(f"Delete {count} dead letter(s){whose}? This cannot be undone")
            typer.echo(f"purged {q.purge_dead(tenant)} dead letter(s){whose}")


def purge_one(q: JobQueue, tenant: str, job_id: str) -> None:
    job = find_job(q, tenant, job_id)
    if job.state != "dead":
        fail(f"job {job_id} is {job.state}, not a dead letter; remove it with quick-queue "
             f"cancel {views.shell_word(tenant)} {views.shell_word(job_id)}")
    if not q.purge_dead(tenant, job_id=job_id):
        fail(f"dead letter {job_id} was retried or purged meanwhile")
    typer.echo(f"purged dead letter {views.shown(tenant)}/{views.shown(job_id)}")


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
                fail(f"job {job_id} is a dead letter; delete it with quick-queue purge "
                     f"{views.shell_word(tenant)} {views.shell_word(job_id)}, or run it again "
                     "with quick-queue retry")
            if not q.cancel(tenant, job_id):
                fail(f"job {job_id} finished before it could be cancelled")
            note = " (it was running: its result will be ignored)" if job.state == "leased" \
                else ""
            typer.echo(f"cancelled {views.shown(tenant)}/{views.shown(job_id)}, which was "
                       f"{job.state}{note}")


# -- worker ------------------------------------------------------------------------------------
def _check_worker_options(concurrency: int, processes: int, drain: bool,
                          timeout: float | None) -> None:
    if concurrency < 1 or processes < 1:
        fail("--concurrency and --processes must be at least 1", 2)
    if concurrency > MAX_CONCURRENCY:
        fail(f"--concurrency {concurrency} is more than {MAX_CONCURRENCY} jobs at once in one "
             "process (a thread each); add processes instead (--processes N)", 2)
    if processes > MAX_PROCESSES:
        fail(f"--processes {processes} is more than {MAX_PROCESSES}", 2)
    if drain and processes > 1:
        fail("--drain runs in one process; drop --processes", 2)
    if timeout is not None and not drain:
        fail("--timeout applies to --drain only (a running worker stops on SIGINT/SIGTERM)", 2)
    if timeout is not None and timeout <= 0:
        fail("--timeout needs a number of seconds > 0", 2)


def _worker_queue(ref: str, db: str | None, queue: str | None) -> JobQueue:
    if db:
        refuse_memory(db)
        os.environ[URL_ENV] = db
    q = load_queue(ref)
    if db and q.db.url != db:
        q = q.with_db(open_db(db))
    if queue and queue != q.name:
        q = JobQueue(q.db, name=queue, jobs=q.registry.handlers(), clock=q.clock,
                     **q.settings.as_dict())
    return q


@app.command()
def worker(
    ref: Annotated[str, typer.Argument(
        metavar="MODULE:ATTR", help="Where your JobQueue is, e.g. tutorial.shop:queue.")],
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", metavar="N",
        help=f"Jobs running at once per process (1..{MAX_CONCURRENCY}).")] = 16,
    processes: Annotated[int, typer.Option(
        "--processes", "-p", metavar="N", help="Consumer processes.")] = 1,
    drain: Annotated[bool, typer.Option(
        "--drain", help="Run the jobs due now, then exit (instead of running until Ctrl-C).")
    ] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", metavar="SECONDS", help="With --drain: give up after this long.")] = None,
    log_level: Annotated[str, typer.Option(
        "--log-level", metavar="LEVEL", help="info: one line per job state change; debug: "
        "also the settings and each topic's options at start.")] = "info",
    db: Annotated[str | None, typer.Option(
        "--db", metavar="URL", help=f"Use this database instead of the queue's own (also sets "
        f"${URL_ENV} before MODULE is imported).")] = None,
    queue: QueueName = None,
    log_format: Annotated[str, typer.Option(
        "--log-format", metavar="text|json", help="json: one JSON object per line, with the "
        "job's id, tenant, topic, attempt and duration.")] = "text",
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", metavar="PORT", min=1, max=65535,
        help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics (web extra).")] = None,
) -> None:
    """Run the handlers of the JobQueue at MODULE:ATTR until SIGINT/SIGTERM, which finish
    running jobs (up to shutdown_grace) and hand back the rest; then exit 0."""
    with reporting_errors():
        _check_worker_options(concurrency, processes, drain, timeout)
        level = setup_logging(log_level, processes)
        apply_log_format(log_format)
        q = _worker_queue(ref, db, queue)
        topics = q.registry.topics()
        if not topics:
            fail(f"{ref} has no job handlers, so every job would be dead-lettered: pass "
                 "jobs=[...] to JobQueue or decorate handlers with @queue.job", 2)
        if level <= logging.DEBUG:
            for line in describe_worker(q):
                logging.getLogger("quick_queue.worker").debug(line)
        start_worker_metrics(q, metrics_port, processes)
        mode = "draining" if drain else "running"
        where = views.shown(q.db.url or repr(q.db))
        typer.echo(f"worker {mode}: queue {views.shown(q.name)!r} on {where}, topics "
                   f"{', '.join(views.shown(t) for t in topics)}; concurrency {concurrency}"
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
            typer.echo(f"stopped: all {processes} worker processes shut down (each logged "
                       "its own jobs above)", err=True)


def main(argv: list[str] | None = None) -> None:
    """The ``quick-queue`` console script."""
    app(args=argv, prog_name="quick-queue")


if __name__ == "__main__":
    main()
