"""Plumbing of the ``quick-queue`` commands: errors as one line, connecting, parsing input,
importing ``MODULE:ATTR`` and worker logging."""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType

from quick_queue import cli_views as views
from quick_queue.clock import Clock, SystemClock
from quick_queue.errors import ClientLibraryMissing, KVError
from quick_queue.kv import errors as kv_errors
from quick_queue.kv import open as open_db
from quick_queue.models import JobInfo
from quick_queue.queue import JobQueue

URL_ENV = "QUICK_QUEUE_URL"
DEBUG_ENV = "QUICK_QUEUE_DEBUG"
#: The clock the commands read "now" from (a test sets a ManualClock here).
CLOCK: Clock = SystemClock()
#: Width of tables written to a pipe or file: wide enough that no column is cut or wrapped
#: (a terminal's own width is used when there is one; ``COLUMNS`` overrides both).
PIPE_WIDTH = 4000
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(message)s"
LOG_FORMAT_PROCESSES = "%(asctime)s.%(msecs)03d [%(process)d] %(message)s"
#: FoundationDB error names by code, for messages that would otherwise show a bare "(1511)".
CODE_NAMES = {value: name.lower() for name, value in vars(kv_errors).items()
              if name.isupper() and isinstance(value, int) and not isinstance(value, bool)}


class Failure(Exception):
    """Ends a command with one ``error:`` line on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise Failure(message, code)


#: click's UsageError (typer vendors click in newer releases, so it is reached through the
#: public typer.BadParameter rather than imported by a path that moves).
USAGE_ERROR: type[Exception] = next(
    cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class UsageFailure(typer.BadParameter):
    """A usage error (unknown option, missing argument, a number out of range) shown as the
    other errors are: one ``error:`` line, exit status 2, instead of click's usage block."""

    exit_code = 2

    def format_message(self) -> str:
        return str(self.message)

    def show(self, file: Any = None) -> None:
        typer.echo("error: " + one_line(self.format_message()), err=True)


def one_usage_line(error: Exception) -> Exception:
    """The one-line form of click's usage ``error`` (the help itself, for a bare command that
    asks for it, is left alone)."""
    if isinstance(error, UsageFailure) or type(error).__name__ == "NoArgsIsHelpError":
        return error
    ctx = getattr(error, "ctx", None)
    command = getattr(ctx, "command_path", None) or "quick-queue"
    message = getattr(error, "format_message", lambda: str(error))()
    return UsageFailure(f"{message} (see {command} --help)")


def one_line(message: str) -> str:
    return " ".join(message.split())


def _name_codes(message: str) -> str:
    """``... (1511)`` becomes ``... (file_not_found, 1511)``: a code alone tells a user
    nothing."""
    def named(match: re.Match[str]) -> str:
        code = int(match.group(1))
        name = CODE_NAMES.get(code)
        return f"({name}, {code})" if name else match.group(0)

    return re.sub(r"\((\d{4})\)", named, message)


def interrupted() -> typer.Exit:
    """Ctrl-C: one ``interrupted`` line, and the status a shell shows for a command that
    SIGINT ended (128 + 2); raise what this returns."""
    typer.echo("interrupted", err=True)
    return typer.Exit(130)


def confirm(question: str) -> None:
    """Ask ``question``; anything but yes aborts ("Aborted!", status 1), as does an answer that
    cannot come (no input). A Ctrl-C at the prompt is an interruption like one anywhere else
    (130): the CLI framework turns it into the same Abort, but leaves it as the context."""
    try:
        typer.confirm(question, abort=True)
    except typer.Abort as aborted:
        if isinstance(aborted.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn every error a command can meet into one line on stderr and an exit status."""
    try:
        yield
    except KeyboardInterrupt:
        raise interrupted() from None
    except Exception as error:
        if type(error).__module__.split(".")[0] in ("typer", "click"):
            raise  # Exit, Abort, usage errors: the CLI framework reports those itself
        if os.environ.get(DEBUG_ENV) and not isinstance(error, Failure):
            raise
        if isinstance(error, Failure):
            message, code = str(error), error.code
        elif isinstance(error, ClientLibraryMissing | KVError):
            message, code = _name_codes(str(error)), 1
        elif isinstance(error, ValueError):
            message, code = str(error), 2
        else:
            message = (f"unexpected {type(error).__name__}: {error} "
                       f"({DEBUG_ENV}=1 shows the traceback)")
            code = 1
        typer.echo("error: " + one_line(message), err=True)
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


def refuse_memory(url: str) -> None:
    """``memory://`` lives as long as the process that opened it: whatever a command wrote
    there would vanish when it exits, and a read command would find it empty."""
    if url.strip().lower().startswith("memory:"):
        fail(f"{url} is a database that lives only as long as this command (a job enqueued "
             "there would vanish on exit); give a file, e.g. --db sqlite:///jobs.db", 2)


def connect(url: str | None, name: str | None, *, must_exist: bool,
            read_only: bool = False) -> JobQueue:
    if not url:
        fail(f"no database given: pass --db URL or set {URL_ENV} "
             "(for example --db sqlite:///jobs.db)", 2)
    refuse_memory(url)
    if must_exist:
        check_exists(url)
    db = open_db(url, read_only=read_only)
    try:
        return JobQueue(db, name=name or "default", clock=CLOCK)
    except Exception:
        db.close()
        raise


@contextmanager
def queue_for(url: str | None, name: str | None, *, must_exist: bool = True,
              read_only: bool = False) -> Iterator[JobQueue]:
    """The queue at ``url``; ``read_only``: opened without writing anything to the store (so
    inspecting works on a read-only file and never changes one)."""
    queue = connect(url, name, must_exist=must_exist, read_only=read_only)
    try:
        yield queue
    finally:
        queue.db.close()


def console() -> Console:
    """Where tables go: the terminal's width on a terminal; piped (``| less``, CI logs) wide
    enough that no column is cut."""
    width = None
    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        width = PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


def json_wanted(as_json: bool, output: str | None) -> bool:
    if output is None:
        return as_json
    if output not in ("table", "json"):
        fail(f"--output must be table or json, not {output!r}", 2)
    if as_json and output == "table":
        fail("--json and --output table contradict each other; give one", 2)
    return output == "json"


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


def _no_constants(name: str) -> NoReturn:
    fail(f"--payload contains {name}, which is not JSON (and no handler could read it back)", 2)


def read_payload_text(text: str) -> str:
    """``--payload``: the JSON itself, ``@FILE`` for a file's contents, ``-`` for stdin (large
    payloads do not fit on a command line)."""
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            fail(f"--payload {text}: cannot read {path}: {error.strerror or error}", 2)
        except UnicodeDecodeError:
            fail(f"--payload {text}: {path} is not UTF-8 text", 2)
    return text


def parse_payload(text: str) -> dict[str, Any]:
    """A payload is a JSON object (the fields a handler's model reads); lists, strings,
    numbers and NaN are refused here, not at run time."""
    raw = read_payload_text(text)
    shown = text if text == "-" or text.startswith("@") else repr(raw[:60])
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as error:
        fail(f"--payload is not valid JSON ({error.msg} at line {error.lineno} column "
             f"{error.colno}): {shown}", 2)
    if not isinstance(data, dict):
        fail(f"--payload must be a JSON object like '{{\"to\": \"a@b.c\"}}', not a "
             f"{type(data).__name__ if data is not None else 'null'}: {shown}", 2)
    _check_finite(data)
    return data


def _check_finite(value: Any) -> None:
    # 1e999 parses as inf without parse_constant seeing it
    if isinstance(value, float) and not math.isfinite(value):
        _no_constants(repr(value))
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item)


def find_job(q: JobQueue, tenant: str, job_id: str) -> JobInfo:
    job = q.get_job(tenant, job_id)
    if job is None:
        fail(f"no job {job_id!r} for tenant {tenant!r} in queue {q.name!r} (finished and "
             "cancelled jobs are not kept)")
    return job


def _import_failure(module_name: str, error: BaseException) -> NoReturn:
    """Where the user's module failed: the last frame in a file of theirs (or the line a
    SyntaxError points at); the whole traceback with QUICK_QUEUE_DEBUG=1."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(error, file=sys.stderr)
    where = ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" at {error.filename}:{error.lineno}"
    else:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if "importlib" not in f.filename]
        if frames:
            where = f" at {frames[-1].filename}:{frames[-1].lineno}"
    hint = "" if os.environ.get(DEBUG_ENV) else f" ({DEBUG_ENV}=1 shows the traceback)"
    fail(f"importing {module_name!r} failed{where}: {type(error).__name__}: {error}{hint}", 1)


def load_queue(ref: str) -> JobQueue:
    """Import ``MODULE:ATTR`` (from the current directory too) and return the JobQueue."""
    match = re.fullmatch(r"([\w.]+):([\w.]+)", ref)
    if not match:
        fail(f"expected MODULE:ATTR naming a JobQueue (like tutorial.shop:queue), not {ref!r}",
             2)
    module_name, attr = match.groups()
    if module_name.endswith(".py"):
        fail(f"{ref!r} names a file; give the module: {module_name[:-3].replace('/', '.')}"
             f":{attr}", 2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            fail(f"cannot import {module_name!r}: no module named {error.name!r} (run from the "
                 "folder that contains it, or set PYTHONPATH)", 2)
        _import_failure(module_name, error)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises
        _import_failure(module_name, error)
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


def setup_logging(level: str, processes: int) -> int:
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
    return numeric


def describe_worker(q: JobQueue) -> list[str]:
    """What ``--log-level debug`` prints before the worker starts: the settings in force and
    each topic's options, so "why did this job run 4 times" is answered in the log."""
    settings = ", ".join(f"{k}={v!r}" for k, v in q.settings.as_dict().items())
    lines = [f"queue {q.name!r} settings: {settings}"]
    for topic in q.registry.topics():
        spec = q.registry.get(topic)
        if spec is None:
            continue
        options = {"priority": spec.priority, "max_retries": spec.max_retries,
                   "timeout": spec.timeout, "backoff_base": spec.backoff_base,
                   "backoff_factor": spec.backoff_factor, "backoff_cap": spec.backoff_cap}
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v is not None)
        model = spec.payload_model.__name__ if spec.payload_model else "any JSON"
        lines.append(f"topic {views.shown(topic)}: {spec.handler.__module__}."
                     f"{spec.handler.__qualname__}, payload {model}"
                     + (", transactional" if spec.transactional else "")
                     + (f", {shown}" if shown else " (queue defaults)"))
    return lines
