"""Pause and resume a topic or a tenant through the JSON API (``GET /api/v1/paused``,
``POST /api/v1/pause`` / ``resume``) over a real SQLite store: a paused topic's jobs do not
run, they run once resumed; without the token, or with bad input, nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import quick_queue as qq

pytest.importorskip("fastapi", reason="the dashboard needs the web extra: pip install -e .[web]")
pytest.importorskip("httpx2", reason="the API tests need httpx2 (web-test extra)")

from fastapi.testclient import TestClient

from quick_queue.web import create_app

TOKEN = "pause-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAN: list[tuple[str, str]] = []


@qq.job(topic="brew")
class Brew:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        RAN.append((meta.tenant, "brew"))


@qq.job(topic="bake")
class Bake:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        RAN.append((meta.tenant, "bake"))


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    RAN.clear()
    db = qq.open(f"sqlite:///{tmp_path}/q.db")
    yield qq.JobQueue(db, jobs=[Brew, Bake])
    db.close()


@pytest.fixture
def client(queue: qq.JobQueue) -> Any:
    with TestClient(create_app(queue, token=TOKEN, refresh=60.0)) as c:
        yield c


def test_a_topic_paused_through_the_api_runs_nothing_until_resumed(
    client: Any, queue: qq.JobQueue
) -> None:
    assert client.get("/api/v1/paused").json() == {"tenant": [], "topic": []}
    done = client.post("/api/v1/pause", json={"topic": "brew"}, headers=AUTH)
    assert done.status_code == 200 and done.json()["message"] == "paused topic 'brew'"
    again = client.post("/api/v1/pause", json={"topic": "brew"}, headers=AUTH)
    assert again.json()["message"] == "topic 'brew' was already paused"
    # the snapshot (60 s refresh) was renewed by the action: the page sees it at once
    assert client.get("/api/v1/paused").json() == {"tenant": [], "topic": ["brew"]}
    queue.enqueue("corner", "brew", {})
    queue.enqueue("corner", "bake", {})
    queue.drain(timeout=10)
    assert RAN == [("corner", "bake")]
    resumed = client.post("/api/v1/resume", json={"topic": "brew"}, headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["message"] == "resumed topic 'brew'"
    assert client.get("/api/v1/paused").json() == {"tenant": [], "topic": []}
    queue.drain(timeout=10)
    assert RAN == [("corner", "bake"), ("corner", "brew")]


def test_a_tenant_paused_through_the_api_waits_while_others_run(
    client: Any, queue: qq.JobQueue
) -> None:
    assert client.post("/api/v1/pause", json={"tenant": "<b>corner</b>"},
                       headers=AUTH).status_code == 200
    assert client.get("/api/v1/paused").json() == {"tenant": ["<b>corner</b>"], "topic": []}
    queue.enqueue("<b>corner</b>", "brew", {})
    queue.enqueue("harbour", "brew", {})
    queue.drain(timeout=10)
    assert RAN == [("harbour", "brew")]
    assert client.post("/api/v1/resume", json={"tenant": "<b>corner</b>"},
                       headers=AUTH).status_code == 200
    queue.drain(timeout=10)
    assert RAN == [("harbour", "brew"), ("<b>corner</b>", "brew")]


def test_without_the_token_nothing_is_paused_or_resumed(client: Any,
                                                         queue: qq.JobQueue) -> None:
    assert client.post("/api/v1/pause", json={"topic": "brew"}).status_code == 401
    assert client.post("/api/v1/pause", json={"topic": "brew"},
                       headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert queue.paused() == {"tenant": [], "topic": []}
    queue.pause(tenant="corner")
    assert client.post("/api/v1/resume", json={"tenant": "corner"}).status_code == 401
    assert queue.paused() == {"tenant": ["corner"], "topic": []}


@pytest.mark.parametrize("body", [
    {},
    {"topic": "brew", "tenant": "corner"},
    {"topic": ""},
    {"tenant": "x" * 1001},
    {"topic": "brwe"},  # a typo: this server knows brew and bake
    {"topic": "brew", "extra": 1},
    {"topic": 7},
    [],
])
def test_bad_targets_get_422_and_change_nothing(client: Any, queue: qq.JobQueue,
                                                body: Any) -> None:
    for action in ("pause", "resume"):
        if action == "resume" and body == {"topic": "brwe"}:
            continue  # resume takes any topic, to undo a pause made elsewhere
        answer = client.post(f"/api/v1/{action}", json=body, headers=AUTH)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"]
    assert queue.paused() == {"tenant": [], "topic": []}


def test_malformed_json_gets_422(client: Any, queue: qq.JobQueue) -> None:
    answer = client.post("/api/v1/pause", content=b"{topic", headers={
        **AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 422
    assert queue.paused() == {"tenant": [], "topic": []}
