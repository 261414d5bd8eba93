"""Edit a dead letter's payload and retry it through the JSON API (``POST /api/v1/dead/retry``
with ``payload``), over a real SQLite store: the job runs with the new payload; a payload
``enqueue`` would refuse, or a request without the token, gets a clear 4xx and changes
nothing."""

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

TOKEN = "edit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MENU = {"espresso", "mocha"}
SERVED: list[dict[str, Any]] = []  # the payloads Order ran with


@qq.job(topic="order", max_retries=0)
class Order:
    class Payload(BaseModel):
        drink: str
        shots: int = 1

    def perform(self, payload: Order.Payload, meta: qq.JobMeta) -> None:
        if payload.drink not in MENU:
            raise RuntimeError(f"no {payload.drink} on the menu")
        SERVED.append(payload.model_dump())


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    SERVED.clear()
    db = qq.open(f"sqlite:///{tmp_path}/q.db")
    yield qq.JobQueue(db, jobs=[Order])
    db.close()


@pytest.fixture
def client(queue: qq.JobQueue) -> Any:
    with TestClient(create_app(queue, token=TOKEN, refresh=0.0)) as c:
        yield c


def _dead_order(queue: qq.JobQueue, drink: str = "mocah") -> str:
    job_id = queue.enqueue("corner", "order", {"drink": drink})
    queue.drain(timeout=10)
    assert SERVED == []
    return job_id


def _dead_state(queue: qq.JobQueue, job_id: str) -> tuple[Any, ...]:
    info = queue.get_job("corner", job_id)
    assert info is not None
    stats = queue.stats()
    return (info.state, info.payload, info.reason, stats.dead, stats.ready,
            stats.topics["order"].get("revived", 0))


def test_an_edited_dead_letter_runs_with_its_new_payload(client: Any, queue: qq.JobQueue
                                                         ) -> None:
    job_id = _dead_order(queue)
    edit = {"tenant": "corner", "job_id": job_id, "payload": {"drink": "mocha", "shots": 2}}
    answer = client.post("/api/v1/dead/retry", json=edit, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert "edited payload" in answer.json()["message"]
    info = queue.get_job("corner", job_id)
    assert info is not None and info.state == "ready" and info.attempt == 0
    assert info.payload == {"drink": "mocha", "shots": 2}
    assert queue.stats().topics["order"]["revived"] == 1  # one retry, as retry_dead counts it
    queue.drain(timeout=10)
    assert SERVED == [{"drink": "mocha", "shots": 2}]
    assert queue.get_job("corner", job_id) is None and queue.stats().dead == 0


def test_the_handler_model_fills_defaults_as_at_enqueue(client: Any, queue: qq.JobQueue
                                                        ) -> None:
    job_id = _dead_order(queue)
    edit = {"tenant": "corner", "job_id": job_id, "payload": {"drink": "espresso"}}
    assert client.post("/api/v1/dead/retry", json=edit, headers=AUTH).status_code == 200
    info = queue.get_job("corner", job_id)
    assert info is not None and info.payload == {"drink": "espresso", "shots": 1}


def test_a_payload_enqueue_would_refuse_gets_422_and_changes_nothing(
    client: Any, queue: qq.JobQueue
) -> None:
    job_id = _dead_order(queue)
    before = _dead_state(queue, job_id)
    ref = {"tenant": "corner", "job_id": job_id}
    refused = {
        "the model": {**ref, "payload": {"drnk": "mocha"}},
        "a field's type": {**ref, "payload": {"drink": "mocha", "shots": "many"}},
        "a list": {**ref, "payload": ["mocha"]},
        "a string": {**ref, "payload": '{"drink": "mocha"}'},
        "the size limit": {**ref, "payload": {"drink": "m" * 150_000}},
        "an unknown field": {**ref, "payload": {"drink": "mocha"}, "attempt": 0},
    }
    for why, body in refused.items():
        answer = client.post("/api/v1/dead/retry", json=body, headers=AUTH)
        assert answer.status_code == 422, (why, answer.text)
        assert answer.json()["detail"], why
    too_big = client.post("/api/v1/dead/retry", headers=AUTH,
                          json={**ref, "payload": {"drink": "m" * 300_000}})
    assert too_big.status_code == 413
    malformed = client.post("/api/v1/dead/retry", content=b'{"tenant": "corner", "payload": {',
                            headers={**AUTH, "Content-Type": "application/json"})
    assert malformed.status_code == 422
    size = client.post("/api/v1/dead/retry", json=refused["the size limit"], headers=AUTH)
    assert "at most" in size.json()["detail"]
    model = client.post("/api/v1/dead/retry", json=refused["the model"], headers=AUTH)
    assert "drink" in model.json()["detail"]
    assert _dead_state(queue, job_id) == before
    gone = {"tenant": "corner", "job_id": "no-such", "payload": {"drink": "mocha"}}
    assert client.post("/api/v1/dead/retry", json=gone, headers=AUTH).status_code == 404


def test_an_edit_needs_the_token_or_a_session_with_its_csrf_token(
    client: Any, queue: qq.JobQueue
) -> None:
    job_id = _dead_order(queue)
    before = _dead_state(queue, job_id)
    edit = {"tenant": "corner", "job_id": job_id, "payload": {"drink": "mocha"}}
    assert client.post("/api/v1/dead/retry", json=edit).status_code == 401
    wrong = client.post("/api/v1/dead/retry", json=edit,
                        headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    csrf = client.get("/api/v1/session").json()["csrf"]
    assert client.post("/api/v1/dead/retry", json=edit).status_code == 403  # cookie alone
    foreign = client.post("/api/v1/dead/retry", json=edit,
                          headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert _dead_state(queue, job_id) == before
    ok = client.post("/api/v1/dead/retry", json=edit, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    queue.drain(timeout=10)
    assert SERVED == [{"drink": "mocha", "shots": 1}]


def test_without_the_handlers_any_json_object_within_the_limit_goes(tmp_path: Path) -> None:
    db = qq.open(f"sqlite:///{tmp_path}/bare.db")
    try:
        producer = qq.JobQueue(db)  # no handlers: what a server without --app knows
        job_id = producer.enqueue("corner", "order", {"drink": "mocah"})
        qq.JobQueue(db, jobs=[Order]).drain(timeout=10)
        with TestClient(create_app(producer, token=TOKEN, refresh=0.0)) as bare:
            edit = {"tenant": "corner", "job_id": job_id, "payload": {"anything": [1, 2]}}
            assert bare.post("/api/v1/dead/retry", json=edit, headers=AUTH).status_code == 200
        info = producer.get_job("corner", job_id)
        assert info is not None and info.state == "ready"
        assert info.payload == {"anything": [1, 2]}
    finally:
        db.close()


def test_an_unreadable_dead_letter_is_refused_before_its_payload_is_checked(
    client: Any, queue: qq.JobQueue
) -> None:
    key = queue.layout.zone("corner").dead_key("broken")
    queue.db.transact(lambda tr: tr.set(key, b"not a record"))
    edit = {"tenant": "corner", "job_id": "broken", "payload": {"drnk": 1}}  # model would refuse
    answer = client.post("/api/v1/dead/retry", json=edit, headers=AUTH)
    assert answer.status_code == 422 and "could not be decoded" in answer.json()["detail"]
    assert queue.db.transact(lambda tr: tr.get(key)) == b"not a record"
