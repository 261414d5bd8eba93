"""The dashboard server: the JSON API under ``/api/v1/`` (its OpenAPI document at
``/api/v1/openapi.json``), the page that shows it (``/``), and Prometheus ``/metrics``.

Every read the page makes goes through the API, and every API read of the queue's shape goes
through one shared snapshot (``snapshot.Snapshots``), refreshed at most every ``refresh``
seconds, so ten open tabs cost the store what one does. Job detail and dead letters are read
on demand (one short transaction each).
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.trustedhost import TrustedHostMiddleware

from quick_queue import read_model
from quick_queue.errors import InvalidArgument, KVError, QuickQueueError
from quick_queue.metrics import QueueCollector
from quick_queue.queue import JobQueue
from quick_queue.web.dead_edit import retry_edited
from quick_queue.web.flow import add_flow_routes
from quick_queue.web.models import (
    ActionResult,
    DeadLetterRef,
    DeadRetry,
    EnqueueRequest,
    EnqueueResponse,
    Problem,
    SessionInfo,
)
from quick_queue.web.security import SESSION_COOKIE, BodyLimit, Guard, check_origin
from quick_queue.web.snapshot import Snapshot, Snapshots, iso

API = "/api/v1"
LOOPBACK = ["127.0.0.1", "localhost", "::1", "[::1]"]
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
#: The page loads nothing from elsewhere and runs only its own script.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form POSTs say Origin: null
    "X-Frame-Options": "DENY",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem},
    413: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem},
}


def _static(name: str) -> bytes:
    return resources.files("quick_queue.web").joinpath("static", name).read_bytes()


def create_app(queue: JobQueue, *, token: str, refresh: float = 2.0,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """The dashboard app over ``queue`` (its handlers, if any, validate enqueued payloads);
    ``token`` allows actions; the store is read at most every ``refresh`` seconds.
    ``allowed_hosts``: the names the server answers to (``Host`` header; any when None): a
    server on 127.0.0.1 answers to loopback names only, so a web page whose own name was
    pointed at 127.0.0.1 (DNS rebinding) cannot read it."""
    app = FastAPI(title="quick_queue dashboard", version="1",
                  description="Read a quick_queue queue and act on it. Reads need no token; "
                  "every action and enqueue needs 'Authorization: Bearer TOKEN'.",
                  openapi_url=f"{API}/openapi.json", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    snapshots = Snapshots(queue, queue.name, refresh)
    guard = Guard(token)
    app.state.snapshots, app.state.guard = snapshots, guard
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue.name, lambda: _stats_of(snapshots.get())))
    _errors(app)
    _pages(app, guard, queue.name)
    _reads(app, queue, snapshots)
    _actions(app, queue, snapshots, guard)
    add_flow_routes(app, API, queue, snapshots, guard, ERRORS)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _stats_of(snap: Snapshot) -> tuple[Any, int]:
    return snap.overview.stats, len(snap.workers)


def _errors(app: FastAPI) -> None:
    async def invalid(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the store is not available: {error}"},
                            status_code=503)

    async def bad_text(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": "text must be valid Unicode (no lone surrogates)"},
                            status_code=422)

    app.add_exception_handler(InvalidArgument, invalid)
    app.add_exception_handler(KVError, unavailable)
    app.add_exception_handler(QuickQueueError, invalid)
    app.add_exception_handler(UnicodeError, bad_text)


def _pages(app: FastAPI, guard: Guard, name: str) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html").decode(), headers=HEADERS)

    @app.get("/static/{asset}", include_in_schema=False)
    def static(asset: str) -> Response:
        if asset not in STATIC:
            raise HTTPException(404, "no such file")
        return Response(_static(asset), media_type=STATIC[asset], headers=HEADERS)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        check_origin(request)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if not guard.token_ok((form.get("token") or [""])[0]):
            return RedirectResponse("/#/login?failed=1", status_code=303)
        response = RedirectResponse("/#/overview", status_code=303)
        response.set_cookie(SESSION_COOKIE, guard.open_session(), httponly=True,
                            samesite="strict", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        guard.require(request)
        guard.close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/#/overview", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get(f"{API}/session", response_model=SessionInfo)
    def session(request: Request) -> SessionInfo:
        """Whether this browser is signed in, and its CSRF token for actions."""
        current = guard.session_of(request)
        return SessionInfo(authenticated=current is not None,
                           csrf=guard.csrf_of(current) if current else None, queue=name)


def _zone(snap: Snapshot, zone: Any) -> dict[str, Any]:
    out: dict[str, Any] = zone.to_dict()
    out["waiting_seconds"] = snap.waited(zone)
    return out


def _reads(app: FastAPI, queue: JobQueue, snapshots: Snapshots) -> None:
    @app.get(f"{API}/overview", responses=ERRORS)
    def overview() -> dict[str, Any]:
        """Counts by state, zones with work, the oldest due job's age, per-topic counters
        (since the queue began), throughput over the last hour, live workers."""
        snap = snapshots.get()
        out = snap.overview.stats.to_dict()
        out.update({"queue": queue.name, "now": snap.overview.now.isoformat(),
                    "zones_with_jobs": snap.overview.zones_with_jobs,
                    "workers": len(snap.workers), "refresh_seconds": snapshots.interval(),
                    "throughput": snapshots.throughput()})
        return out

    @app.get(f"{API}/tenants", responses=ERRORS)
    def tenants(limit: Annotated[int, Query(ge=1, le=100)] = 50) -> dict[str, Any]:
        """The deepest zones (most ready jobs first) and how long each has waited: fairness
        made visible."""
        snap = snapshots.get()
        return {"zones_with_jobs": snap.overview.zones_with_jobs,
                "tenants": [_zone(snap, z) for z in snap.overview.zones[:limit]]}

    @app.get(f"{API}/zone", responses=ERRORS)
    def zone(tenant: Annotated[str, Query(min_length=1)],
             limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        """One tenant's zone: its depths, and up to ``limit`` jobs per state (ready in the
        order they will run, scheduled by due time, leased by lease expiry)."""
        view = read_model.zone_view(queue, tenant)
        jobs = read_model.zone_jobs(queue, tenant, limit)
        return {"zone": view.to_dict(),
                "jobs": {state: [j.to_dict() for j in page] for state, page in jobs.items()}}

    @app.get(f"{API}/jobs/{{job_id}}", responses=ERRORS)
    def job(job_id: str, tenant: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
        """One job (live or dead letter): payload, attempts, last error, schedule, and the
        live worker that holds it, if one does."""
        info = queue.get_job(tenant, job_id)
        if info is None:
            raise HTTPException(404, "no such job: it completed, was cancelled or purged, "
                                "or never existed")
        out = info.to_dict()
        holders = [w.worker_id for w in snapshots.get().workers
                   if (tenant, job_id) in w.jobs]
        out["held_by"] = holders[0] if holders else None
        return out

    @app.get(f"{API}/dead", responses=ERRORS)
    def dead(tenant: Annotated[str | None, Query(min_length=1)] = None,
             limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        """Dead letters (one tenant's or all), with the reason each died."""
        letters = queue.dead_letters(tenant, limit)
        return {"dead": snapshots.get().overview.stats.dead,
                "letters": [j.to_dict() for j in letters]}

    @app.get(f"{API}/workers", responses=ERRORS)
    def workers() -> dict[str, Any]:
        """Workers whose heartbeat has not lapsed, with the jobs each holds."""
        snap = snapshots.get()
        return {"workers": [w.to_dict() for w in snap.workers],
                "now": iso(snap.overview.now)}


def _actions(app: FastAPI, queue: JobQueue, snapshots: Snapshots, guard: Guard) -> None:
    @app.post(f"{API}/jobs", status_code=201, response_model=EnqueueResponse, responses=ERRORS)
    def enqueue(request: Request, job: Annotated[EnqueueRequest, Body()]) -> EnqueueResponse:
        """Enqueue a job (needs the token), checked as ``JobQueue.enqueue`` checks it."""
        guard.require(request)
        topics = queue.registry.topics()
        if topics and job.topic not in topics:
            raise HTTPException(422, f"unknown topic {job.topic!r}: this server knows "
                                f"{', '.join(sorted(topics))}")
        job_id = queue.enqueue(job.tenant, job.topic, job.payload, in_=job.in_, at=job.at,
                               priority=job.priority, max_retries=job.max_retries, key=job.key)
        snapshots.invalidate()
        return EnqueueResponse(job_id=job_id, tenant=job.tenant)

    @app.post(f"{API}/dead/retry", response_model=ActionResult, responses=ERRORS)
    def retry(request: Request, ref: Annotated[DeadRetry, Body()]) -> ActionResult:
        """Run a dead letter again (ready now, with a fresh retry budget; needs the token),
        with ``payload`` instead of its own when given (replaced in the same transaction;
        a payload ``enqueue`` would refuse gets 422 and changes nothing)."""
        guard.require(request)
        if ref.payload is None:
            found = queue.retry_dead(ref.tenant, ref.job_id)
        else:
            found = retry_edited(queue, ref.tenant, ref.job_id, ref.payload)
        if not found:
            raise HTTPException(404, "no such dead letter (retried or purged meanwhile?)")
        snapshots.invalidate()
        edited = " with the edited payload" if ref.payload is not None else ""
        return ActionResult(ok=True, message=f"retrying {ref.job_id}{edited}: ready now")

    @app.post(f"{API}/dead/purge", response_model=ActionResult, responses=ERRORS)
    def purge(request: Request, ref: Annotated[DeadLetterRef, Body()]) -> ActionResult:
        """Delete one dead letter for good (needs the token)."""
        guard.require(request)
        if not queue.purge_dead(ref.tenant, job_id=ref.job_id):
            raise HTTPException(404, "no such dead letter (retried or purged meanwhile?)")
        snapshots.invalidate()
        return ActionResult(ok=True, message=f"purged {ref.job_id}")
