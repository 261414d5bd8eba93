"""The CLI items of issue 8's "Confusing" and "Polish" lists, one test each: piped width,
escaped control characters, payload forms, one-line usage errors, ``-p``, ``--version``,
purging one dead letter, option bounds and conflicts, ``--log-level debug``, import errors
with file and line, ``memory://`` and foreign databases refused, ``inspect`` read-only."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import quick_queue as qq
from quick_queue import cli
from quick_queue.cli import app

EVIL = "evil\x1b[31mred\nline\x00[bold]x[/]\u202e"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("QUICK_QUEUE_URL", "QUICK_QUEUE_DEBUG", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/q.db"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)


def ok(*args: str, stdin: str | None = None) -> str:
    result = run(*args, stdin=stdin)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def bad(code: int, *args: str, stdin: str | None = None) -> str:
    result = run(*args, stdin=stdin)
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Usage:" not in result.output and "Traceback" not in result.output
    return lines[0]


def enqueue(url: str, tenant: str = "acme", topic: str = "email", payload: str = "{}") -> str:
    return ok("enqueue", topic, "--tenant", tenant, "--payload", payload, "--db", url).strip()


# -- output ------------------------------------------------------------------------------------
def test_piped_tables_are_not_cut_to_80_columns(url: str) -> None:
    tenant = "tenant-with-a-rather-long-name-" + "x" * 70
    topic = "topic-with-a-long-name-" + "y" * 40
    enqueue(url, tenant, topic)
    for args in (["inspect"], ["inspect", "zone", tenant]):
        out = ok(*args, "--db", url)
        assert any(tenant in line for line in out.splitlines()), out
        assert any(topic in line for line in out.splitlines()), out


def test_control_characters_are_escaped_in_every_view(url: str) -> None:
    job_id = enqueue(url, EVIL, "topic\x1b]0;title\x07", '{"note": "\\u001b[2J"}')
    outputs = [
        ok("inspect", "--db", url), ok("inspect", "zone", EVIL, "--db", url),
        ok("inspect", "job", EVIL, job_id, "--db", url),
    ]
    for out in outputs:
        assert "\x1b" not in out and "\x00" not in out and "\x07" not in out
        assert "\u202e" not in out
        assert "\\x1b[31mred\\nline\\x00[bold]x[/]" in out  # shown, not obeyed or styled
    overview, zone, job = (json.loads(ok(*args, "--db", url, "--json")) for args in (
        ["inspect"], ["inspect", "zone", EVIL], ["inspect", "job", EVIL, job_id]))
    # the JSON keeps the exact name (escaped the JSON way, never raw)
    assert overview["zone_list"][0]["tenant"] == zone["tenant"] == job["tenant"] == EVIL
    assert "\u202e" not in ok("inspect", "job", EVIL, job_id, "--db", url, "--json")


def test_dead_letters_view_escapes_too(url: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deadapp.py").write_text(
        "import os\nimport quick_queue as qq\n"
        "queue = qq.JobQueue(qq.open(os.environ['QUICK_QUEUE_URL']))\n"
        "@queue.job(topic='boom', max_retries=0)\n"
        "class Boom:\n"
        "    def perform(self, payload, meta):\n"
        "        raise RuntimeError('bad\\x1b[31m thing')\n")
    ok("enqueue", "boom", "--tenant", EVIL, "--max-retries", "0", "--db", url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICK_QUEUE_URL", url)
    ok("worker", "deadapp:queue", "--drain")
    out = ok("inspect", "dead", "--db", url)
    assert "\x1b" not in out and "\\x1b[31mred" in out and "bad\\x1b[31m thing" in out


# -- payloads ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "says"), [
    ("[1, 2]", "must be a JSON object"), ('"hello"', "must be a JSON object"),
    ("3", "must be a JSON object"), ("null", "must be a JSON object"),
    ('{"a": NaN}', "NaN, which is not JSON"), ('{"a": [Infinity]}', "Infinity"),
    ('{"a": 1e999}', "inf"),
])
def test_payload_must_be_a_json_object(url: str, payload: str, says: str) -> None:
    assert says in bad(2, "enqueue", "t", "--tenant", "a", "--payload", payload, "--db", url)


def test_payload_from_a_file_and_from_stdin(url: str, tmp_path: Path) -> None:
    big = {"blob": "z" * 90_000}  # too long for a command line, under the 99 kB limit
    (tmp_path / "payload.json").write_text(json.dumps(big))
    from_file = enqueue(url, payload=f"@{tmp_path}/payload.json")
    from_stdin = ok("enqueue", "email", "--tenant", "acme", "--payload", "-", "--db", url,
                    stdin='{"to": "stdin"}').strip()
    assert json.loads(ok("inspect", "job", "acme", from_file, "--db", url, "--json")
                      )["payload"] == big
    assert json.loads(ok("inspect", "job", "acme", from_stdin, "--db", url, "--json")
                      )["payload"] == {"to": "stdin"}
    assert "cannot read" in bad(2, "enqueue", "t", "--tenant", "a", "--payload",
                                f"@{tmp_path}/nothing.json", "--db", url)


# -- usage errors, flags -----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "says"), [
    (["enqueue"], "Missing argument"),
    (["inspect", "--bogus"], "No such option: --bogus"),
    (["inspect", "--zones", "many"], "--zones"),
    (["inspect", "--zones", "-1"], "--zones"),
    (["inspect", "zone", "acme", "--limit", "0"], "--limit"),
    (["nosuchcommand"], "No such command"),
    (["enqueue", "t", "--tenant", "a", "-p", "{}"], "No such option: -p"),  # -p is --processes
])
def test_usage_errors_are_one_line(args: list[str], says: str) -> None:
    line = bad(2, *args)
    assert says in line and "--help" in line


def test_json_and_output_table_conflict(url: str) -> None:
    enqueue(url)
    assert "contradict" in bad(2, "inspect", "--json", "-o", "table", "--db", url)
    assert "contradict" in bad(2, "inspect", "-o", "table", "dead", "--json", "--db", url)


def test_version() -> None:
    out = ok("--version")
    assert out.startswith("quick-queue ") and cli.DISTRIBUTION in out


@pytest.mark.parametrize(("args", "says"), [
    (["--timeout", "5"], "--timeout applies to --drain only"),
    (["--drain", "--timeout", "0"], "--timeout needs a number of seconds > 0"),
    (["-c", "100000", "--drain"], "more than 512 jobs at once"),
    (["-p", "100000"], "--processes 100000 is more than"),
])
def test_worker_options_are_checked_before_starting(url: str, args: list[str],
                                                    says: str) -> None:
    assert says in bad(2, "worker", "tutorial.shop:queue", "--db", url, *args)


def test_worker_suggests_the_module_for_a_file_name(url: str) -> None:
    assert "give the module: papp:queue" in bad(2, "worker", "papp.py:queue", "--db", url)


def test_a_failing_import_shows_file_and_line(url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brokenapp.py").write_text("import os\n\nraise RuntimeError('no config')\n")
    (tmp_path / "syntaxapp.py").write_text("def f(:\n")
    monkeypatch.chdir(tmp_path)
    line = bad(1, "worker", "brokenapp:queue", "--db", url)
    assert f"{tmp_path}/brokenapp.py:3" in line and "RuntimeError: no config" in line
    assert "QUICK_QUEUE_DEBUG=1" in line
    assert f"{tmp_path}/syntaxapp.py:1" in bad(1, "worker", "syntaxapp:queue", "--db", url)
    monkeypatch.setenv("QUICK_QUEUE_DEBUG", "1")
    result = run("worker", "brokenapp:queue", "--db", url)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and 'brokenapp.py", line 3' in result.stderr


def test_log_level_debug_shows_settings_and_topic_options(url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    (tmp_path / "debugapp.py").write_text(
        "import os\nimport quick_queue as qq\n"
        "queue = qq.JobQueue(qq.open(os.environ['QUICK_QUEUE_URL']), item_lease=7.0)\n"
        "@queue.job(topic='mail', max_retries=1, priority=5)\n"
        "class Mail:\n"
        "    def perform(self, payload, meta):\n"
        "        return None\n")
    monkeypatch.chdir(tmp_path)
    info = run("worker", "debugapp:queue", "--drain", "--db", url)
    debug = run("worker", "debugapp:queue", "--drain", "--db", url, "--log-level", "debug")
    assert info.exit_code == debug.exit_code == 0, debug.stderr
    assert "item_lease=7.0" in debug.stderr and "item_lease" not in info.stderr
    assert "topic mail: debugapp.Mail" in debug.stderr
    assert "max_retries=1" in debug.stderr and "priority=5" in debug.stderr


# -- fixing: purge one -------------------------------------------------------------------------
def test_purge_one_dead_letter(url: str) -> None:
    db = qq.open(url)
    queue = qq.JobQueue(db)
    ids = [queue.enqueue("acme", "ghost-topic", {}) for _ in range(2)]  # no handler: dead
    other = queue.enqueue("zed", "ghost-topic", {})

    @queue.job(topic="known")
    class Known:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            return None

    assert queue.drain().dead == 3
    db.close()
    assert "quick-queue purge acme " + ids[0] in bad(1, "cancel", "acme", ids[0], "--db", url)
    assert ok("purge", "acme", ids[0], "--db", url).strip() == f"purged dead letter acme/{ids[0]}"
    left = json.loads(ok("inspect", "dead", "--db", url, "--json"))
    assert {j["job_id"] for j in left["jobs"]} == {ids[1], other}
    assert "no job" in bad(1, "purge", "acme", ids[0], "--db", url)
    assert "give TENANT JOB_ID" in bad(2, "purge", "acme", "--db", url)


# -- databases ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["enqueue", "t", "--tenant", "a"], ["inspect"], ["purge", "--yes"],
    ["worker", "tutorial.shop:queue", "--drain"],
])
def test_memory_database_is_refused(args: list[str]) -> None:
    line = bad(2, *args, "--db", "memory://")
    assert "lives only as long as this command" in line


def test_a_foreign_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table customers (name text)")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    line = bad(1, "enqueue", "t", "--tenant", "a", "--db", f"sqlite:///{path}")
    assert "another application" in line and "customers" in line
    assert "(2000)" not in line  # a code comes with its name
    assert bad(1, "inspect", "--db", f"sqlite:///{path}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_inspect_writes_nothing(url: str, tmp_path: Path) -> None:
    enqueue(url)
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("q.db")}
    for args in (["inspect"], ["inspect", "dead"], ["inspect", "zone", "acme"]):
        ok(*args, "--db", url)
    assert {p: p.read_bytes() for p in files} == files
