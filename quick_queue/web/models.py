"""The JSON API's request and response shapes (pydantic: the same library the queue validates
payloads with; FastAPI draws the OpenAPI document from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EnqueueRequest(BaseModel):
    """``POST /api/v1/jobs``: the arguments of ``JobQueue.enqueue``. The server checks them as
    ``enqueue`` does (and, when it was started with ``--app``, the payload against the topic's
    ``Payload`` model)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tenant: str = Field(description="Whose job: the tenant's queue zone.")
    topic: str = Field(description="The handler's topic.")
    payload: Any = Field(default=None, description="JSON data for the handler.")
    in_: float | None = Field(default=None, alias="in",
                              description="Run this many seconds from now.")
    at: datetime | None = Field(default=None, description="Run at this aware time.")
    priority: int | None = Field(default=None, description="0..1000, lower runs first.")
    max_retries: int | None = Field(default=None, description="Retries after the first run.")
    key: str | None = Field(default=None, description="Idempotency key (per tenant).")


class EnqueueResponse(BaseModel):
    job_id: str
    tenant: str


class DeadLetterRef(BaseModel):
    """One dead letter, for retry and purge."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    job_id: str


class DeadRetry(DeadLetterRef):
    """``POST /api/v1/dead/retry``: one dead letter, and optionally the payload to run it with
    instead of the one it died with."""

    payload: dict[str, Any] | None = Field(
        default=None,
        description="Replace the payload before the retry, in the same transaction: a JSON "
        "object, checked as enqueue checks one for the job's topic (the handler's model when "
        "the server was started with --app, the size limit). Absent or null: keep it.")


class ActionResult(BaseModel):
    ok: bool
    message: str


class SessionInfo(BaseModel):
    authenticated: bool
    csrf: str | None = None
    queue: str


class Problem(BaseModel):
    detail: str


class PauseTarget(BaseModel):
    """``POST /api/v1/pause`` and ``/resume``: exactly one of a topic or a tenant."""

    model_config = ConfigDict(extra="forbid")

    topic: str | None = Field(default=None, min_length=1, max_length=1000,
                              description="Stop (or resume) starting jobs of this topic.")
    tenant: str | None = Field(default=None, min_length=1, max_length=1000,
                               description="Stop (or resume) starting this tenant's jobs.")

    @model_validator(mode="after")
    def _exactly_one(self) -> PauseTarget:
        if (self.topic is None) == (self.tenant is None):
            raise ValueError("give exactly one of topic or tenant")
        return self


class Paused(BaseModel):
    """What is paused: tenants (their zones parked) and topics (their jobs set aside)."""

    tenant: list[str]
    topic: list[str]
