"""``quick-queue pause`` / ``resume`` and what ``quick-queue inspect`` shows of flow control
(issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import quick_queue as qq
from quick_queue.cli import app


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("QUICK_QUEUE_URL", raising=False)
    address = f"sqlite:///{tmp_path}/q.db"
    db = qq.open(address)
    qq.JobQueue(db).enqueue("acme", "email", {"to": "a@b.c"})  # the store exists
    db.close()
    return address


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_pause_and_resume_from_the_shell_show_in_inspect(url: str) -> None:
    result = run("pause", "--topic", "email", "--db", url)
    assert (result.exit_code, result.stdout) == (0, "paused topic email\n")
    assert run("pause", "--topic", "email", "--db", url).stdout == \
        "topic email was already paused\n"
    assert run("pause", "--tenant", "acme", "--db", url).exit_code == 0
    db = qq.open(url)
    try:
        queue = qq.JobQueue(db)
        assert queue.paused() == {"tenant": ["acme"], "topic": ["email"]}
        queue.periodic("nightly", cron="0 3 * * *", tenant="acme", topic="email")
    finally:
        db.close()
    text = run("inspect", "--db", url).stdout
    assert "paused tenants: acme" in text and "paused topics: email" in text
    assert "schedule nightly: acme/email cron '0 3 * * *', next " in text
    data = json.loads(run("inspect", "--db", url, "--json").stdout)
    assert data["paused"] == {"tenant": ["acme"], "topic": ["email"]}
    assert [s["name"] for s in data["schedules"]] == ["nightly"]
    assert run("resume", "--topic", "email", "--db", url).stdout == "resumed topic email\n"
    assert run("resume", "--topic", "email", "--db", url).stdout == \
        "topic email was not paused\n"
    assert "paused topics" not in run("inspect", "--db", url).stdout


@pytest.mark.parametrize("args", [[], ["--topic", "a", "--tenant", "b"]])
def test_pause_needs_exactly_one_target(url: str, args: list[str]) -> None:
    result = run("pause", *args, "--db", url)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: give exactly one of --topic or --tenant"
