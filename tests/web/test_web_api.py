"""The dashboard's JSON API over a real SQLite store: reads without a token, actions and
enqueue only with it, clear 4xx answers that change nothing, CSRF for the browser session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import quick_queue as qq

pytest.importorskip("fastapi", reason="the dashboard needs the web extra: pip install -e .[web]")
pytest.importorskip("httpx2", reason="the API tests need httpx2 (web-test extra)")

from fastapi.testclient import TestClient

from quick_queue.web import create_app
from quick_queue.web.app import LOOPBACK

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@qq.job(topic="greet")
class Greet:
    class Payload(BaseModel):
        name: str

    def perform(self, payload: Greet.Payload, meta: qq.JobMeta) -> None:
        return None


@qq.job(topic="boom", max_retries=0)
class Boom:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        raise RuntimeError("kaput <b>bold</b>")


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    db = qq.open(f"sqlite:///{tmp_path}/q.db")
    yield qq.JobQueue(db, jobs=[Greet, Boom])
    db.close()


@pytest.fixture
def client(queue: qq.JobQueue) -> Any:
    with TestClient(create_app(queue, token=TOKEN, refresh=0.0)) as c:
        yield c


def _dead_letter(queue: qq.JobQueue) -> str:
    job_id = queue.enqueue("acme", "boom", {})
    queue.drain(timeout=10)
    return job_id


def _store(queue: qq.JobQueue) -> dict[str, Any]:
    stats = queue.stats()
    return {"ready": stats.ready, "scheduled": stats.scheduled, "dead": stats.dead}


def test_reads_need_no_token(client: Any, queue: qq.JobQueue) -> None:
    dead = _dead_letter(queue)
    queue.enqueue("deep", "greet", {"name": "a"})
    queue.enqueue("deep", "greet", {"name": "b"})
    later = queue.enqueue("shallow", "greet", {"name": "c"}, in_=600)
    overview = client.get("/api/v1/overview").json()
    assert (overview["ready"], overview["scheduled"], overview["dead"]) == (2, 1, 1)
    assert overview["topics"]["boom"]["dead"] == 1
    tenants = client.get("/api/v1/tenants").json()["tenants"]
    assert [t["tenant"] for t in tenants] == ["deep", "shallow"]
    assert tenants[0]["waiting_seconds"] >= 0 and tenants[1]["waiting_seconds"] is None
    job = client.get(f"/api/v1/jobs/{later}", params={"tenant": "shallow"}).json()
    assert job["state"] == "scheduled" and job["payload"] == {"name": "c"}
    assert job["held_by"] is None
    letters = client.get("/api/v1/dead").json()["letters"]
    assert [j["job_id"] for j in letters] == [dead]
    assert "kaput" in letters[0]["last_error"]
    assert client.get("/api/v1/workers").json()["workers"] == []
    assert client.get("/api/v1/jobs/nope", params={"tenant": "acme"}).status_code == 404
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/jobs", "/api/v1/overview", "/api/v1/dead/retry"} <= set(paths)


def test_enqueue_needs_the_token_and_is_checked_like_enqueue(
    client: Any, queue: qq.JobQueue
) -> None:
    job = {"tenant": "acme", "topic": "greet", "payload": {"name": "Ada"}}
    before = _store(queue)
    refusals = [
        (client.post("/api/v1/jobs", json=job), 401),
        (client.post("/api/v1/jobs", json=job, headers={"Authorization": "Bearer wrong"}), 403),
        (client.post("/api/v1/jobs", json=job, headers={"Authorization": "Basic x"}), 403),
        (client.post("/api/v1/jobs", content=b'{"tenant": "acme", "topic":',
                     headers={**AUTH, "Content-Type": "application/json"}), 422),
        (client.post("/api/v1/jobs", json={**job, "topic": "gret"}, headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "payload": {"nom": 1}}, headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "priority": 5000}, headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "in": 5, "at": "2030-01-01T00:00:00Z"},
                     headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "tenant": ""}, headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "extra": 1}, headers=AUTH), 422),
        (client.post("/api/v1/jobs", json={**job, "payload": {"name": "x" * 300_000}},
                     headers=AUTH), 413),
        (client.post("/api/v1/jobs", content=b"x" * 10, headers={**AUTH, "Content-Length":
                                                                  "999999999"}), 413),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.text
        assert response.json()["detail"]
    assert _store(queue) == before
    made = client.post("/api/v1/jobs", json={**job, "in": 60, "key": "k1"}, headers=AUTH)
    assert made.status_code == 201
    info = queue.get_job("acme", made.json()["job_id"])
    assert info is not None and info.state == "scheduled" and info.payload == {"name": "Ada"}


def test_retry_and_purge_dead_letters_with_the_token(client: Any, queue: qq.JobQueue) -> None:
    first, second = _dead_letter(queue), _dead_letter(queue)
    ref = {"tenant": "acme", "job_id": first}
    assert client.post("/api/v1/dead/retry", json=ref).status_code == 401
    assert queue.stats().dead == 2
    assert client.post("/api/v1/dead/retry", json=ref, headers=AUTH).status_code == 200
    info = queue.get_job("acme", first)
    assert info is not None and info.state == "ready"
    gone = {"tenant": "acme", "job_id": "no-such"}
    assert client.post("/api/v1/dead/purge", json=gone, headers=AUTH).status_code == 404
    assert client.post("/api/v1/dead/purge", json={"tenant": "acme", "job_id": second},
                       headers=AUTH).status_code == 200
    assert queue.get_job("acme", second) is None
    assert client.get("/api/v1/overview").json()["dead"] == 0


def test_a_browser_session_acts_only_with_its_csrf_token(client: Any, queue: qq.JobQueue
                                                         ) -> None:
    dead = _dead_letter(queue)
    ref = {"tenant": "acme", "job_id": dead}
    wrong = client.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 303 and "failed" in wrong.headers["location"]
    assert not client.get("/api/v1/session").json()["authenticated"]
    signed = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed.status_code == 303 and "HttpOnly" in signed.headers["set-cookie"]
    session = client.get("/api/v1/session").json()
    assert session["authenticated"] and session["csrf"]
    assert client.post("/api/v1/dead/retry", json=ref).status_code == 403  # cookie alone
    assert client.post("/api/v1/dead/retry", json=ref,
                       headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/api/v1/dead/retry", json=ref, headers={
        "X-CSRF-Token": session["csrf"], "Origin": "http://evil.example"}).status_code == 403
    assert queue.stats().dead == 1  # nothing changed so far
    ok = client.post("/api/v1/dead/retry", json=ref, headers={"X-CSRF-Token": session["csrf"]})
    assert ok.status_code == 200 and queue.stats().dead == 0


def test_the_page_carries_no_data_and_forbids_inline_scripts(client: Any,
                                                              queue: qq.JobQueue) -> None:
    queue.enqueue("<script>alert(1)</script>", "greet", {"name": "<img src=x onerror=1>"})
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "alert(1)" not in page.text  # the page is static: data comes as JSON, drawn as text
    tenants = client.get("/api/v1/tenants")
    assert tenants.headers["content-type"] == "application/json"
    assert tenants.json()["tenants"][0]["tenant"] == "<script>alert(1)</script>"
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script and "textContent" in script
    assert client.get("/static/../app.py").status_code == 404


def test_metrics_serve_the_queue_gauges(client: Any, queue: qq.JobQueue) -> None:
    _dead_letter(queue)
    queue.enqueue("a", "greet", {"name": "x"})
    text = client.get("/metrics").text
    assert 'quick_queue_queue_ready{queue="default"} 1.0' in text
    assert 'quick_queue_queue_dead{queue="default"} 1.0' in text
    assert 'quick_queue_store_jobs_total{counter="dead",queue="default",topic="boom"} 1.0' in text


def test_a_loopback_server_answers_to_loopback_names_only(queue: qq.JobQueue) -> None:
    app = create_app(queue, token=TOKEN, allowed_hosts=LOOPBACK)
    with TestClient(app, base_url="http://127.0.0.1:8719") as local:
        assert local.get("/api/v1/overview").status_code == 200
        assert local.get("/api/v1/overview",
                         headers={"Host": "localhost:8719"}).status_code == 200
        # a page at attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding)
        rebound = local.get("/api/v1/overview", headers={"Host": "attacker.example:8719"})
        assert rebound.status_code == 400


def test_a_zone_lists_its_jobs_by_state(client: Any, queue: qq.JobQueue) -> None:
    now = queue.enqueue("acme", "greet", {"name": "a"})
    later = queue.enqueue("acme", "greet", {"name": "b"}, in_=60)
    zone = client.get("/api/v1/zone", params={"tenant": "acme"}).json()
    assert (zone["zone"]["ready"], zone["zone"]["scheduled"]) == (1, 1)
    assert [j["job_id"] for j in zone["jobs"]["ready"]] == [now]
    assert [j["job_id"] for j in zone["jobs"]["scheduled"]] == [later]
    empty = client.get("/api/v1/zone", params={"tenant": "nobody"}).json()
    assert empty["zone"]["ready"] == 0 and empty["jobs"]["ready"] == []
