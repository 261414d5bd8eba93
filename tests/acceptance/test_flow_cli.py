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


def test_inspect_shows_caps_rates_tenant_limits_and_waiting_jobs(url: str) -> None:
    db = qq.open(url)
    try:
        queue = qq.JobQueue(db)
        queue.set_max_running("email", 5)
        queue.set_rate_limit("email", "30/min")
        queue.set_tenant_max_running("acme", 2)
        queue.set_tenant_rate_limit("acme", "10/s")
        first = queue.enqueue("acme", "email", {}, in_=60)
        queue.enqueue("acme", "email", {}, after=[first])
    finally:
        db.close()
    text = run("inspect", "--db", url).stdout
    for line in ("max running: email=5", "rate limits: email=30/min",
                 "tenant max running: acme=2", "tenant rate limits: acme=10/s",
                 "waiting for other jobs: 1"):
        assert line in text
    data = json.loads(run("inspect", "--db", url, "--json").stdout)
    assert (data["max_running"], data["tenant_max_running"]) == ({"email": 5}, {"acme": 2})
    assert data["tenant_rate_per_second"] == {"acme": 10.0}
    assert data["waiting_for_other_jobs"] == 1
