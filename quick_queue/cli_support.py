"""Plumbing of the ``quick-queue`` commands: errors as one line, connecting, parsing input,
importing ``MODULE:ATTR`` and worker logging."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType

from quick_queue import cli_views as views
from quick_queue.clock import Clock, SystemClock
from quick_queue.errors import ClientLibraryMissing, KVError
from quick_queue.kv import open as open_db
from quick_queue.models import JobInfo
from quick_queue.queue import JobQueue

URL_ENV = "QUICK_QUEUE_URL"
#: The clock the commands read "now" from (a test sets a ManualClock here).
CLOCK: Clock = SystemClock()
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(message)s"
LOG_FORMAT_PROCESSES = "%(asctime)s.%(msecs)03d [%(process)d] %(message)s"


class Failure(Exception):
    """Ends a command with one ``error:`` line on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise Failure(message, code)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn every error a command can meet into one line on stderr and an exit status."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:
        if type(error).__module__.split(".")[0] in ("typer", "click"):
            raise  # Exit, Abort, usage errors: the CLI framework reports those itself
        if os.environ.get("QUICK_QUEUE_DEBUG") and not isinstance(error, Failure):
            raise
        if isinstance(error, Failure):
            message, code = str(error), error.code
        elif isinstance(error, ClientLibraryMissing | KVError):
            message, code = str(error), 1
        elif isinstance(error, ValueError):
            message, code = str(error), 2
        else:
            message = (f"unexpected {type(error).__name__}: {error} "
                       "(QUICK_QUEUE_DEBUG=1 shows the traceback)")
            code = 1
        typer.echo("error: " + " ".join(message.split()), err=True)
        raise typer.Exit(code) from None


def check_exists(url: str) -> None:
    """A read command must not create the database it was asked to read (opening a SQLite
    file creates it), so a missing file is an error, found before opening."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        return
    path = rest.partition("?")[0]
    if path.startswith("/") and len(path) > 1 and not Path(path[1:]).exists():
        fail(f"no database file at {path[1:]} (from {url}); check --db or ${URL_ENV}, or "
             "enqueue a job first")


def connect(url: str | None, name: str | None, *, must_exist: bool) -> JobQueue:
    if not url:
        fail(f"no database given: pass --db URL or set {URL_ENV} "
             "(for example --db sqlite:///jobs.db)", 2)
    if must_exist:
        check_exists(url)
    db = open_db(url)
    try:
        return JobQueue(db, name=name or "default", clock=CLOCK)
    except Exception:
        db.close()
        raise


@contextmanager
def queue_for(url: str | None, name: str | None, *, must_exist: bool = True
              ) -> Iterator[JobQueue]:
    queue = connect(url, name, must_exist=must_exist)
    try:
        yield queue
    finally:
        queue.db.close()


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def json_wanted(as_json: bool, output: str | None) -> bool:
    if output is None or output == "table":
        return as_json
    if output == "json":
        return True
    fail(f"--output must be table or json, not {output!r}", 2)


def emit(data: Any, render: Callable[[], RenderableType], as_json: bool) -> None:
    if as_json:
        typer.echo(views.to_json(data))
    else:
        console().print(render())


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``1.5``, ``90s``, ``5m``, ``2h``, ``1d`` or ``1h30m``."""
    units = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text.strip().lower())
    joined = "".join(f"{n}{u}" for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", text.strip().lower()):
        fail(f"--in takes a duration like 30, 90s, 5m, 2h or 1h30m, not {text!r}", 2)
    return sum(float(n) * units[u] for n, u in parts)


def parse_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"--payload is not valid JSON ({error.msg} at line {error.lineno} column "
             f"{error.colno}): {text[:60]!r}", 2)


def find_job(q: JobQueue, tenant: str, job_id: str) -> JobInfo:
    job = q.get_job(tenant, job_id)
    if job is None:
        fail(f"no job {job_id!r} for tenant {tenant!r} in queue {q.name!r} (finished and "
             "cancelled jobs are not kept)")
    return job


def load_queue(ref: str) -> JobQueue:
    """Import ``MODULE:ATTR`` (from the current directory too) and return the JobQueue."""
    match = re.fullmatch(r"([\w.]+):([\w.]+)", ref)
    if not match:
        fail(f"expected MODULE:ATTR naming a JobQueue (like tutorial.shop:queue), not {ref!r}",
             2)
    module_name, attr = match.groups()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            fail(f"cannot import {module_name!r}: no module named {error.name!r} (run from the "
                 "folder that contains it, or set PYTHONPATH)", 2)
        fail(f"importing {module_name!r} failed: {error}", 1)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises
        fail(f"importing {module_name!r} failed: {type(error).__name__}: {error}", 1)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            fail(f"{module_name!r} has no attribute {attr!r}", 2)
        obj = getattr(obj, part)
    if not isinstance(obj, JobQueue) and callable(obj) and not isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, JobQueue):
        fail(f"{ref} is a {type(obj).__name__}, not a quick_queue.JobQueue", 2)
    return obj


def setup_logging(level: str, processes: int) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"--log-level must be debug, info, warning or error, not {level!r}", 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        LOG_FORMAT_PROCESSES if processes > 1 else LOG_FORMAT, datefmt="%H:%M:%S"))
    logger = logging.getLogger("quick_queue")
    logger.handlers[:] = [handler]
    logger.setLevel(numeric)
    logger.propagate = False
