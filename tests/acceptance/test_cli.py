"""The ``quick-queue`` CLI in process (typer's CliRunner): every command, ``--json`` shapes, and
bad input ending in one ``error:`` line with a non-zero status, never a traceback."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import quick_queue as qq
from quick_queue import cli_support
from quick_queue.cli import app
from quick_queue.cli_views import relative, span

JOB_FIELDS = {
    "job_id", "tenant", "topic", "state", "attempt", "max_retries", "priority", "payload",
    "due_at", "enqueued_at", "last_error", "reason", "dead_kind", "snoozes",
    "lease_expires_at", "key", "result", "result_note", "started_at", "finished_at",
    "duration", "kept_until", "progress",
}
STATS_FIELDS = {"ready", "scheduled", "leased", "dead", "zones", "due_zones", "topics",
                "oldest_due_age_seconds"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/q.db"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No QUICK_QUEUE_URL from outside; the worker command may set it (undone here), and it
    configures the "quick_queue" logger (restored here, so other tests' caplog still works)."""
    monkeypatch.delenv("QUICK_QUEUE_URL", raising=False)
    monkeypatch.delenv("QUICK_QUEUE_DEBUG", raising=False)
    logger = logging.getLogger("quick_queue")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def bad(code: int, *args: str, stdin: str | None = None) -> str:
    """Run a command that must fail: exit ``code``, exactly one ``error:`` line on stderr."""
    result = run(*args, stdin=stdin)
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def enqueue(url: str, tenant: str = "acme", topic: str = "email", *extra: str) -> str:
    result = ok("enqueue", topic, "--tenant", tenant, "--payload", '{"to": "a@b.c"}',
                "--db", url, *extra)
    job_id = result.stdout.strip()
    assert len(job_id) >= 24 and "\n" not in job_id
    return job_id


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


# -- the happy paths -----------------------------------------------------------------------------
def test_help_lists_every_command() -> None:
    out = ok("--help").stdout
    for command in ("inspect", "worker", "enqueue", "retry", "purge", "cancel"):
        assert command in out
    inspect_help = ok("inspect", "--help").stdout
    for sub in ("zone", "job", "dead", "--watch", "--json"):
        assert sub in inspect_help


def test_enqueue_then_inspect_overview_table_and_json(url: str) -> None:
    enqueue(url, "acme")
    enqueue(url, "acme", "email", "--in", "5m")
    enqueue(url, "zenith", "report", "--priority", "5")
    table = ok("inspect", "--db", url).stdout
    assert "ready 2" in table and "scheduled 1" in table and "dead 0" in table
    assert "acme" in table and "zenith" in table
    assert "in 5 min" in table  # the scheduled job, in human time
    assert "Per-topic counters" in table and "email" in table
    data = as_json("inspect", "--db", url)
    assert STATS_FIELDS <= set(data)
    assert (data["ready"], data["scheduled"], data["leased"], data["dead"]) == (2, 1, 0, 0)
    assert data["topics"] == {"email": {"enqueued": 2}, "report": {"enqueued": 1}}
    assert data["queue"] == "default" and data["zones_with_jobs"] == 2
    assert {z["tenant"] for z in data["zone_list"]} == {"acme", "zenith"}
    assert data["oldest_due_age_seconds"] is not None and data["oldest_due_age_seconds"] >= 0
    assert json.loads(ok("inspect", "--db", url, "-o", "json").stdout).keys() == data.keys()


def test_url_from_the_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUICK_QUEUE_URL", url)
    job_id = ok("enqueue", "t", "--tenant", "acme").stdout.strip()
    assert as_json("inspect", "job", "acme", job_id)["job_id"] == job_id


def test_queue_names_are_separate(url: str) -> None:
    ok("enqueue", "t", "--tenant", "acme", "--db", url, "--queue", "other")
    assert as_json("inspect", "--db", url)["ready"] == 0
    assert as_json("inspect", "--db", url, "--queue", "other")["ready"] == 1


def test_inspect_zone_lists_jobs_in_run_order(url: str) -> None:
    late = enqueue(url, "acme", "email", "--in", "90s")
    normal = enqueue(url, "acme")
    urgent = enqueue(url, "acme", "email", "--priority", "1")
    data = as_json("inspect", "zone", "acme", "--db", url)
    assert (data["tenant"], data["ready"], data["scheduled"], data["leased"]) == ("acme", 2, 1, 0)
    assert [j["job_id"] for j in data["jobs"]] == [urgent, normal, late]
    assert all(set(j) == JOB_FIELDS for j in data["jobs"])
    table = ok("inspect", "zone", "acme", "--db", url).stdout
    assert table.index(urgent) < table.index(normal) < table.index(late)
    assert "in 1.5 min" in table
    # options before the subcommand work too
    assert json.loads(ok("inspect", "--db", url, "--json", "zone", "acme").stdout) \
        ["ready"] == 2


def test_inspect_job_shows_every_field(url: str) -> None:
    job_id = enqueue(url, "acme", "email", "--key", "order-7", "--max-retries", "5")
    data = as_json("inspect", "job", "acme", job_id, "--db", url)
    assert set(data) == JOB_FIELDS
    assert (data["state"], data["attempt"], data["max_retries"], data["key"]) == \
        ("ready", 0, 5, "order-7")
    assert data["payload"] == {"to": "a@b.c"}
    table = ok("inspect", "job", "acme", job_id, "--db", url).stdout
    assert "0 of 6" in table and "order-7" in table and '"a@b.c"' in table
    # the same key gives the same job
    assert enqueue(url, "acme", "email", "--key", "order-7") == job_id


def test_enqueue_in_accepts_human_durations(url: str) -> None:
    for text, seconds in (("30", 30), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800)):
        job_id = enqueue(url, "acme", "email", "--in", text)
        due = datetime.fromisoformat(as_json("inspect", "job", "acme", job_id, "--db",
                                             url)["due_at"])
        assert abs((due - datetime.now(UTC)).total_seconds() - seconds) < 5


# -- workers ---------------------------------------------------------------------------------------
APP = """
from __future__ import annotations
import os
import quick_queue as qq

db = qq.open(os.environ["QUICK_QUEUE_URL"])
queue = qq.JobQueue(db, backoff_base=0.01)

@queue.job(topic="hello")
class Hello:
    def perform(self, payload, meta):
        if payload.get("fail"):
            raise RuntimeError("boom")

def make_queue():
    return queue

not_a_queue = 42
no_handlers = qq.JobQueue(db)
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module with a JobQueue, importable from the current directory (a new name each test:
    the worker imports it in this process)."""
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def test_worker_drain_logs_one_line_per_state_change(url: str, app_module: str) -> None:
    good = ok("enqueue", "hello", "--tenant", "acme", "--db", url).stdout.strip()
    failing = ok("enqueue", "hello", "--tenant", "acme", "--payload", '{"fail": true}',
                 "--max-retries", "0", "--db", url).stdout.strip()
    result = ok("worker", f"{app_module}:queue", "--drain", "--concurrency", "2", "--db", url)
    log = result.stderr
    assert f"start hello acme/{good} attempt 1" in log
    assert f"done hello acme/{good}" in log
    assert f"dead hello acme/{failing}" in log and "RuntimeError: boom" in log
    assert "drained: 1 completed, 0 retried, 1 dead" in log
    assert as_json("inspect", "--db", url)["dead"] == 1


def test_worker_accepts_a_factory(url: str, app_module: str) -> None:
    ok("enqueue", "hello", "--tenant", "acme", "--db", url)
    result = ok("worker", f"{app_module}:make_queue", "--drain", "--db", url)
    assert "drained: 1 completed" in result.stderr


@pytest.mark.parametrize(("ref", "code", "says"), [
    ("nocolon", 2, "expected MODULE:ATTR"),
    ("no_such_module_xyz:queue", 2, "no module named 'no_such_module_xyz'"),
    ("{app}:nothing", 2, "has no attribute 'nothing'"),
    ("{app}:not_a_queue", 2, "is a int, not a quick_queue.JobQueue"),
    ("{app}:no_handlers", 2, "has no job handlers"),
])
def test_worker_rejects_bad_module_attr(url: str, app_module: str, ref: str, code: int,
                                        says: str) -> None:
    line = bad(code, "worker", ref.format(app=app_module), "--drain", "--db", url)
    assert says in line


def test_worker_reports_a_module_that_fails_to_import(tmp_path: Path, url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('config missing')\n")
    monkeypatch.chdir(tmp_path)
    line = bad(1, "worker", f"{name}:queue", "--drain", "--db", url)
    assert "RuntimeError: config missing" in line


def test_inspect_sees_a_job_a_running_worker_holds(url: str) -> None:
    release = threading.Event()
    started = threading.Event()

    @qq.job(topic="slow")
    class Slow:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            started.set()
            release.wait(10)

    db = qq.open(url)
    queue = qq.JobQueue(db, jobs=[Slow], item_lease=5.0)
    job_id = queue.enqueue("acme", "slow", {})
    drain = threading.Thread(target=queue.drain, daemon=True)
    drain.start()
    try:
        assert started.wait(10)
        data = as_json("inspect", "--db", url)
        assert data["leased"] == 1 and data["ready"] == 0
        assert [j["job_id"] for j in data["expiring_leases"]] == [job_id]
        table = ok("inspect", "--db", url).stdout
        assert "Leases ending within 10 s" in table and job_id in table
        job = as_json("inspect", "job", "acme", job_id, "--db", url)
        assert job["state"] == "leased" and job["attempt"] == 1
        assert job["lease_expires_at"] is not None
    finally:
        release.set()
        drain.join(10)
        db.close()
    assert as_json("inspect", "--db", url)["topics"]["slow"]["completed"] == 1


# -- dead letters, retry, purge, cancel --------------------------------------------------------
def _dead_letters(url: str, *tenants: str) -> list[str]:
    """One dead letter per tenant (an unknown topic: dead on arrival)."""
    ids = [ok("enqueue", "nobody.handles.this", "--tenant", t, "--db", url).stdout.strip()
           for t in tenants]

    @qq.job(topic="other")
    class Other:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            return None

    with qq.open(url) as db:
        qq.JobQueue(db, jobs=[Other]).drain()
    return ids


def test_inspect_dead_and_retry_one(url: str) -> None:
    job_id, _ = _dead_letters(url, "acme", "zenith")
    data = as_json("inspect", "dead", "--db", url)
    assert data["total"] == 2 and len(data["jobs"]) == 2
    assert all(set(j) == JOB_FIELDS and j["state"] == "dead" for j in data["jobs"])
    assert {j["dead_kind"] for j in data["jobs"]} == {"unknown_topic"}
    only = as_json("inspect", "dead", "--tenant", "acme", "--db", url)
    assert [j["job_id"] for j in only["jobs"]] == [job_id]
    limited = as_json("inspect", "dead", "--limit", "1", "--db", url)
    assert limited["total"] == 2 and len(limited["jobs"]) == 1
    table = ok("inspect", "dead", "--db", url).stdout
    assert "Dead letters (2)" in table and "no handler for topic" in table
    assert "retrying acme/" in ok("retry", "acme", job_id, "--db", url).stdout
    job = as_json("inspect", "job", "acme", job_id, "--db", url)
    assert job["state"] == "ready" and job["attempt"] == 0
    assert "is ready, not a dead letter" in bad(1, "retry", "acme", job_id, "--db", url)


def test_retry_all_and_purge(url: str) -> None:
    _dead_letters(url, "a", "b", "c")
    assert "retrying 1 dead letter" in ok("retry", "--all", "--tenant", "a", "--db", url).stdout
    assert "retrying 2 dead letter" in ok("retry", "--all", "--db", url).stdout
    assert "no dead letters" in ok("retry", "--all", "--db", url).stdout
    _dead_letters(url, "d", "e")
    aborted = run("purge", "--db", url, stdin="n\n")
    assert aborted.exit_code != 0 and as_json("inspect", "--db", url)["dead"] >= 2
    assert "purged" in ok("purge", "--tenant", "d", "--yes", "--db", url).stdout
    assert as_json("inspect", "dead", "--db", url)["total"] >= 1
    confirmed = run("purge", "--db", url, stdin="y\n")
    assert confirmed.exit_code == 0 and "purged" in confirmed.stdout
    assert as_json("inspect", "--db", url)["dead"] == 0
    assert "no dead letters" in ok("purge", "--yes", "--db", url).stdout


def test_cancel(url: str) -> None:
    job_id = enqueue(url, "acme")
    assert "cancelled acme/" in ok("cancel", "acme", job_id, "--db", url).stdout
    assert "no job" in bad(1, "cancel", "acme", job_id, "--db", url)
    assert as_json("inspect", "--db", url)["topics"]["email"]["cancelled"] == 1
    (dead,) = _dead_letters(url, "acme")
    assert "is a dead letter" in bad(1, "cancel", "acme", dead, "--db", url)


# -- bad input: one line, non-zero, no traceback ---------------------------------------------
def test_no_database_given() -> None:
    assert "pass --db URL or set QUICK_QUEUE_URL" in bad(2, "inspect")


def test_unknown_url_scheme() -> None:
    line = bad(2, "inspect", "--db", "postgres://localhost/jobs")
    assert "unknown scheme 'postgres'" in line and "Accepted forms" in line
    assert "unknown scheme" in bad(2, "enqueue", "t", "--tenant", "a", "--db", "redis://x")


@pytest.mark.parametrize("args", [
    ["inspect"], ["inspect", "zone", "acme"], ["inspect", "job", "acme", "123"],
    ["inspect", "dead"], ["retry", "acme", "123"], ["retry", "--all"], ["purge", "--yes"],
    ["cancel", "acme", "123"],
])
def test_read_commands_never_create_a_missing_database(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "missing.db"
    line = bad(1, *args, "--db", f"sqlite:///{path}")
    assert "no database file at" in line and str(path) in line
    assert not path.exists()


def test_missing_folder_for_enqueue(tmp_path: Path) -> None:
    line = bad(1, "enqueue", "t", "--tenant", "a", "--db", f"sqlite:///{tmp_path}/no/such/q.db")
    assert "does not exist" in line


def test_invalid_payload_json(url: str) -> None:
    line = bad(2, "enqueue", "t", "--tenant", "a", "--payload", "{to: nobody}", "--db", url)
    assert "--payload is not valid JSON" in line
    assert not Path(url.removeprefix("sqlite:///")).exists()  # checked before opening


@pytest.mark.parametrize(("args", "says"), [
    (["--in", "soon"], "--in takes a duration"),
    (["--in", "5x"], "--in takes a duration"),
    (["--priority", "5000"], "priority must be an integer in 0..1000"),
    (["--max-retries", "-1"], "max_retries must be an integer >= 0"),
])
def test_invalid_enqueue_options(url: str, args: list[str], says: str) -> None:
    assert says in bad(2, "enqueue", "t", "--tenant", "a", "--db", url, *args)


def test_enqueue_needs_a_tenant(url: str) -> None:
    assert "--tenant is required" in bad(2, "enqueue", "t", "--db", url)


def test_unknown_tenant_and_job(url: str) -> None:
    enqueue(url, "acme")
    assert "unknown tenant 'ghost'" in bad(1, "inspect", "zone", "ghost", "--db", url)
    assert "no job 'nope' for tenant 'acme'" in bad(1, "inspect", "job", "acme", "nope",
                                                     "--db", url)
    assert "no job 'nope'" in bad(1, "retry", "acme", "nope", "--db", url)


def test_bad_output_format_and_watch_placement(url: str) -> None:
    enqueue(url, "acme")
    assert "--output must be table or json" in bad(2, "inspect", "-o", "yaml", "--db", url)
    assert "not with inspect job" in bad(2, "inspect", "--watch", "job", "acme", "x",
                                         "--db", url)


def test_retry_needs_a_job_or_all(url: str) -> None:
    enqueue(url, "acme")
    assert "give TENANT JOB_ID, or --all" in bad(2, "retry", "--db", url)
    assert "give TENANT JOB_ID, or --all" in bad(2, "retry", "acme", "--db", url)


def test_missing_foundationdb_client_or_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(url: str, **options: Any) -> qq.Database:
        raise qq.ClientLibraryMissing("The FoundationDB client library (libfdb_c) is not "
                                      "installed.\nInstall it from GitHub.")

    monkeypatch.setattr(cli_support, "open_db", missing)
    line = bad(1, "inspect", "--db", "fdb://")
    assert "libfdb_c" in line and "Install it" in line  # newlines folded into the one line

    def unreachable(url: str, **options: Any) -> qq.Database:
        raise qq.KVError(1031, "cannot reach the FoundationDB cluster described by "
                               "/etc/foundationdb/fdb.cluster (no answer within 5 s)")

    monkeypatch.setattr(cli_support, "open_db", unreachable)
    assert "cannot reach the FoundationDB cluster" in bad(1, "inspect", "dead", "--db",
                                                          "fdb:///etc/foundationdb/fdb.cluster")


def test_unexpected_errors_are_one_line_too(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(url, "acme")

    def broken(queue: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr("quick_queue.read_model.overview", broken)
    line = bad(1, "inspect", "--db", url)
    assert "unexpected OSError: disk on fire" in line and "QUICK_QUEUE_DEBUG" in line


# -- human times ---------------------------------------------------------------------------------
def test_human_times() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert relative(now + timedelta(seconds=4), now) == "in 4 s"
    assert relative(now - timedelta(minutes=3), now) == "3 min ago"
    assert relative(now + timedelta(seconds=90), now) == "in 1.5 min"
    assert relative(now + timedelta(hours=2), now) == "in 2 h"
    assert relative(now - timedelta(days=12), now) == "12 d ago"
    assert relative(now, now) == "now" and relative(None, now) == "-"
    assert (span(45), span(1.25), span(59.9), span(600)) == ("45 s", "1.2 s", "60 s", "10 min")
