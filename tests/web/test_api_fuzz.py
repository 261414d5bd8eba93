"""The JSON API fuzzed from its own OpenAPI document (schemathesis) against a live server over a
real SQLite store, with the token: no answer is a 500, a refused request changes nothing, and
every accepted enqueue wrote exactly the job it was asked for (so nothing ``enqueue`` would
refuse got in)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import quick_queue as qq

pytest.importorskip("schemathesis", reason="API fuzzing needs schemathesis "
                    "(pip install -e .[web-test])")
pytest.importorskip("uvicorn", reason="the dashboard needs the web extra")

import schemathesis
import uvicorn

from quick_queue.web import create_app

TOKEN = "fuzz-token"
pytestmark = pytest.mark.slow


@qq.job(topic="greet")
class Greet:
    class Payload(BaseModel):
        name: str

    def perform(self, payload: Greet.Payload, meta: qq.JobMeta) -> None:
        return None


class Live:
    def __init__(self, base: str, queue: qq.JobQueue) -> None:
        self.base = base
        self.queue = queue


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    db = qq.open(f"sqlite:///{path}/q.db")
    queue = qq.JobQueue(db, jobs=[Greet])
    queue.enqueue("acme", "greet", {"name": "seed"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(queue, token=TOKEN, refresh=0.0),
                                           host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.02)
    yield Live(f"http://127.0.0.1:{port}", queue)
    server.should_exit = True
    thread.join(10)
    db.close()


def _jobs(queue: qq.JobQueue) -> tuple[int, int, int]:
    stats = queue.stats()
    return stats.ready, stats.scheduled, stats.dead


def _check(case: Any, live: Live) -> str:
    before = _jobs(live.queue)
    response = case.call(base_url=live.base, headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=10)
    assert response.status_code < 500, (case.method, case.path, response.text)
    accepted = case.method == "POST" and response.status_code in (200, 201)
    if not accepted:
        assert _jobs(live.queue) == before, (response.status_code, response.text)
        return "refused" if response.status_code >= 400 else "read"
    if case.path == "/api/v1/jobs":
        body = case.body
        job = live.queue.get_job(body["tenant"], response.json()["job_id"])
        assert job is not None and job.topic == "greet" == body["topic"]
        assert Greet.Payload.model_validate(job.payload).name == body["payload"]["name"]
        return "accepted"
    if case.path in ("/api/v1/pause", "/api/v1/resume"):
        # exactly one of topic or tenant was accepted (the other absent or null)
        ((kind, name),) = [(k, v) for k, v in case.body.items() if v is not None]
        assert (name in live.queue.paused()[kind]) == case.path.endswith("pause")
    return "acted"


def test_fuzzed_requests_get_no_500_and_change_nothing_unless_accepted(live: Live) -> None:
    # schemathesis's strategies driven by hypothesis directly (its pytest plugin is not used)
    schema = schemathesis.openapi.from_url(f"{live.base}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    outcomes: list[str] = []
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy(), topic=st.booleans(), name=st.none() | st.text())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any, topic: bool, name: str | None) -> None:
            # Steer some enqueues to the real topic and a valid payload shape, so accepted
            # requests are fuzzed too (the schema cannot know the topics).
            if case.path == "/api/v1/jobs" and isinstance(case.body, dict):
                if topic:
                    case.body["topic"] = "greet"
                if name is not None:
                    case.body["payload"] = {"name": name}
            outcomes.append(_check(case, live))

        fuzz()
    assert {"accepted", "refused"} <= set(outcomes)
