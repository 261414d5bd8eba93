"""The dashboard server and its JSON API (the optional ``web`` extra:
``pip install "quick-queue-zones[web]"``).

Run it with ``quick-queue dashboard --db URL [--app MODULE:ATTR] [--port 8719] [--token T]``;
it listens on 127.0.0.1 unless ``--host`` says otherwise and prints its URL (and a generated
token when none was given). From Python: ``create_app(queue, token=...)`` is an ASGI app.

The API (``/api/v1/``, OpenAPI document at ``/api/v1/openapi.json``)::

    GET  overview            counts by state, zones, oldest due job's age, per-topic counters,
                             throughput watched over the last hour, live workers
    GET  tenants?limit=      the deepest zones and how long each has waited (fairness)
    GET  zone?tenant=        one zone's depths and jobs per state
    GET  jobs/{id}?tenant=   one job: payload, attempts, last error, schedule, the worker holding it
    GET  dead?tenant=&limit= dead letters
    GET  workers             live workers (heartbeat not lapsed) and the jobs each holds
    POST jobs                enqueue {tenant, topic, payload, in | at, priority, max_retries, key}
    POST dead/retry          {tenant, job_id[, payload]}: run a dead letter again (with an
                             edited payload, a JSON object checked as enqueue checks it)
    POST dead/purge          {tenant, job_id}: delete it
    GET  paused              {tenant: [...], topic: [...]}: what flow control has paused
    POST pause | resume      {topic} or {tenant}: stop / start again starting its jobs

Reads need no token; every POST needs ``Authorization: Bearer TOKEN`` (or, from the page, a
signed-in session plus its CSRF token). Bodies over 256 kB get 413, malformed or invalid input
422 with the reason, nothing written. ``/metrics`` serves the queue's gauges for Prometheus.

Every read of the queue's shape shares one snapshot, refreshed at most every ``--refresh``
seconds (2 by default) however many pages are open; see ``snapshot`` for what a refresh costs.
"""

from __future__ import annotations

from quick_queue.web.app import create_app

__all__ = ["create_app"]
