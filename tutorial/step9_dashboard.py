"""Step 9: the dashboard, its JSON API and Prometheus metrics (needs the ``web`` extra; the step
says so and is skipped without it)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from tutorial import kit
from tutorial.shop import queue, reset

TOKEN = "espresso-token"  # a real deployment lets the dashboard generate one


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body: bytes = answer.read()
            return body
    except (urllib.error.URLError, OSError):
        return None  # not listening yet


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main() -> None:
    kit.heading("Step 9: the dashboard, its JSON API and Prometheus metrics")
    try:
        import fastapi  # noqa: F401 - only checking that the web extra is there
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        kit.say("Skipped: the dashboard needs the web extra (pip install "
                f"\"quick-queue-zones[web]\"); here: {error}")
        return
    reset("kiosk")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    kit.say(f"$ quick-queue dashboard --app tutorial.shop:queue --port {port} --token {TOKEN}")
    server = subprocess.Popen(
        [sys.executable, "-m", "quick_queue.cli", "dashboard", "--app", "tutorial.shop:queue",
         "--port", str(port), "--token", TOKEN, "--refresh", "0.2"],
        cwd=kit.ROOT, env=kit.cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        overview = json.loads(kit.wait(lambda: _answer(server, f"{base}/api/v1/overview"),
                                       20, "the dashboard to listen"))
        stats = queue.stats()
        kit.check(overview["dead"] == stats.dead and overview["ready"] == stats.ready,
                  f"GET /api/v1/overview matches queue.stats(): {overview['ready']} ready, "
                  f"{overview['dead']} dead, {overview['zones_with_jobs']} zones with jobs")
        kit.say("\nAnother service (any language) enqueues through the API with the token:")
        kit.say(f"$ curl -s -H 'Authorization: Bearer {TOKEN}' -H 'Content-Type: "
                f"application/json' \\\n    -d '{{\"tenant\": \"kiosk\", \"topic\": \"brew\", "
                f"\"payload\": {{\"order_id\": \"K-1\", \"drink\": \"latte\"}}}}' "
                f"{base}/api/v1/jobs")
        status, made = _post(f"{base}/api/v1/jobs", {
            "tenant": "kiosk", "topic": "brew",
            "payload": {"order_id": "K-1", "drink": "latte"}})
        kit.say(f"{status} {json.dumps(made)}")
        info = queue.get_job("kiosk", made.get("job_id", ""))
        kit.check(status == 201 and info is not None and info.state == "ready",
                  "the job is in the kiosk's zone, ready for a worker")
        status, refused = _post(f"{base}/api/v1/jobs", {
            "tenant": "kiosk", "topic": "brew", "payload": {"order_id": "K-2"}})
        kit.check(status == 422, f"a payload the brew handler's model refuses gets {status}: "
                  f"{str(refused.get('detail'))[:60]}...")
        scrape = (_get(f"{base}/metrics") or b"").decode()
        lines = [ln for ln in scrape.splitlines() if ln.startswith("quick_queue_queue_")]
        kit.say("\n$ curl -s " + f"{base}/metrics | grep ^quick_queue_queue_ | head -4")
        for line in lines[:4]:
            kit.say(line)
        kit.check(f'quick_queue_queue_dead{{queue="default"}} {float(stats.dead)}' in scrape,
                  "Prometheus /metrics serves the same counts")
        kit.say(f"\nOpen {base}/ in a browser for the pages (this demo's server stops now; "
                "yours runs until Ctrl-C).")
    finally:
        server.terminate()
        server.wait(10)


def _answer(server: subprocess.Popen[str], url: str) -> bytes | None:
    """What ``url`` answers, None while the server is starting; fails if the server exited."""
    if server.poll() is not None:
        why = server.stderr.read() if server.stderr else ""
        raise AssertionError(f"the dashboard exited: {why}")
    return _get(url)


if __name__ == "__main__":
    kit.run_step(main)
