"""``quick-queue dashboard`` (the web dashboard and JSON API) and the worker's
``--metrics-port``. Both need the optional ``web`` extra; it is imported only when one of them
runs, so the rest of the CLI works without it."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import sys
import tempfile
from types import FrameType
from typing import Annotated, Any

import typer

from quick_queue import cli_views as views
from quick_queue.cli_inspect import Db, QueueName
from quick_queue.cli_support import (
    URL_ENV,
    connect,
    fail,
    load_queue,
    refuse_memory,
    reporting_errors,
)
from quick_queue.consumer.processes import in_each_child
from quick_queue.kv import open as open_db
from quick_queue.logjson import set_log_format
from quick_queue.queue import JobQueue

TOKEN_ENV = "QUICK_QUEUE_DASHBOARD_TOKEN"
DEFAULT_PORT = 8719
NEEDS_WEB = 'needs the web extra: pip install "quick-queue-zones[web]"'


def _queue(db: str | None, queue: str | None, app_ref: str | None) -> JobQueue:
    """The queue to show: the application's (``--app``: its handlers validate enqueued
    payloads) or a bare one on ``--db``."""
    if app_ref is None:
        return connect(db or os.environ.get(URL_ENV), queue, must_exist=True)
    if db:
        refuse_memory(db)
        os.environ[URL_ENV] = db
    q = load_queue(app_ref)
    if db and q.db.url != db:
        q = q.with_db(open_db(db))
    if queue and queue != q.name:
        q = JobQueue(q.db, name=queue, jobs=q.registry.handlers(), clock=q.clock,
                     **q.settings.as_dict())
    return q


def _check_port(host: str, port: int) -> None:
    """Fail with one line now rather than with the server's traceback later."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error} (pick another --port "
             "or --host)", 1)


def dashboard(
    db: Db = None,
    queue: QueueName = None,
    app_ref: Annotated[str | None, typer.Option(
        "--app", metavar="MODULE:ATTR", help="Your JobQueue: its handlers' payload models then "
        "check jobs enqueued through the API, and unknown topics are refused.")] = None,
    host: Annotated[str, typer.Option(
        "--host", metavar="HOST", help="Address to listen on (only this machine by default; "
        "0.0.0.0 serves every network you are on).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", metavar="PORT", min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", envvar=TOKEN_ENV, show_envvar=True,
        help="Token that allows actions and enqueue (generated and printed when absent).")
    ] = None,
    refresh: Annotated[float, typer.Option(
        "--refresh", metavar="SECONDS", min=0.2, help="Read the store at most this often.")
    ] = 2.0,
) -> None:
    """Serve the web dashboard, its JSON API (/api/v1/, OpenAPI at /api/v1/openapi.json) and
    Prometheus /metrics. Reading needs no token; actions and enqueue need the token."""
    with reporting_errors():
        try:
            import uvicorn  # noqa: F401 - only checking that the web extra is there

            from quick_queue.web.app import LOOPBACK, create_app
        except ImportError as error:
            fail(f"the dashboard {NEEDS_WEB} ({error})", 2)
        q = _queue(db, queue, app_ref)
        generated = not token
        secret = token or _new_token()
        _check_port(host, port)
        shown_host = f"[{host}]" if ":" in host else host
        lines = [
            f"dashboard: http://{shown_host}:{port}/ (queue {views.shown(q.name)!r} on "
            f"{views.shown(q.db.url or repr(q.db))}); Ctrl-C to stop",
            f"token: {secret}" if generated else f"token: as given (--token or ${TOKEN_ENV})",
        ]
        if host not in LOOPBACK:
            lines.append(f"warning: listening on {host}: anyone who can reach it can read the "
                         "queue (actions still need the token)")
        app = create_app(q, token=secret, refresh=refresh,
                         allowed_hosts=LOOPBACK if host in LOOPBACK else None)
        _serve(app, host, port, lines)
        typer.echo("dashboard stopped", err=True)


def _serve(app: Any, host: str, port: int, ready: list[str]) -> None:
    """Serve until SIGINT/SIGTERM, then return (exit status 0, as the worker's), where uvicorn
    would raise the signal again after its graceful shutdown. ``ready`` is printed once the
    server listens, so the URL it shows can be opened at once."""

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            for line in ready:
                typer.echo(line, err=True)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
            self.should_exit = True

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


def _new_token() -> str:
    from quick_queue.web.security import new_token

    return new_token()


def apply_log_format(name: str) -> None:
    """``quick-queue worker --log-format text|json`` (after the worker's logging is set up)."""
    if name not in ("text", "json"):
        fail(f"--log-format must be text or json, not {name!r}", 2)
    set_log_format(name)


def start_worker_metrics(q: JobQueue, port: int | None, processes: int) -> Any:
    """``quick-queue worker --metrics-port N``: serve the worker's metrics at
    http://127.0.0.1:N/metrics while it runs (None: nothing to do). With several processes,
    each child writes its counts to a shared folder (prometheus_client's multiprocess mode) and
    the supervisor serves their sum; the in-flight and scanner gauges, read from live objects,
    are then left out."""
    if port is None:
        return None
    if processes > 1:
        _multiprocess_mode()
    try:
        from quick_queue.metrics import WorkerMetrics, multiprocess_registry, serve
    except ImportError as error:
        fail(f"--metrics-port {NEEDS_WEB} ({error})", 2)
    _check_port("127.0.0.1", port)
    metrics = WorkerMetrics()
    metrics.attach(q.context)  # forked worker processes inherit the subscription
    if processes > 1:  # spawned ones (FoundationDB) subscribe on their own
        in_each_child("quick_queue.metrics:count_in_child")
    server = serve(port, multiprocess_registry() if processes > 1 else metrics.registry)
    typer.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
    return server


def _multiprocess_mode() -> None:
    """Point prometheus_client at a fresh folder for this run's processes (removed at exit)."""
    folder = tempfile.mkdtemp(prefix="quick-queue-metrics-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already (by the application): metrics made from now on
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
