"""``queue.result()``: the returned value of a job that keeps its result, waiting for it.

Waiting blocks in ``db.wait_for_change``, which returns when a commit lands (the embedded
engine signals every commit; on FoundationDB the settle transaction of a kept result bumps the
change key when the consumer passes ``notify``), and reads the job again only then: one read
per commit seen, never a timed poll of the store. ``WAKE_CAP`` bounds each wait anyway, so a
wake-up lost between the read and the wait costs at most that long.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from quick_queue.core import admin
from quick_queue.errors import (
    InvalidArgument,
    JobCancelled,
    JobDead,
    JobDiscarded,
    JobNotFound,
    ResultNotKept,
    ResultTimeout,
)
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
from quick_queue.models import JobInfo

WAKE_CAP = 1.0  # seconds: the longest a waiter sleeps without re-reading
LIVE_STATES = frozenset({"ready", "scheduled", "leased", "unreadable"})


def wait_seconds(wait: float | timedelta | None) -> float:
    """``wait`` as seconds (None: forever); InvalidArgument for anything else."""
    if wait is None:
        return math.inf
    if isinstance(wait, timedelta):
        wait = wait.total_seconds()
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        raise InvalidArgument(
            f"result(wait=...) takes seconds >= 0, a timedelta or None (forever), got {wait!r}"
        )
    return float(wait)


def result(
    db: Database, layout: Layout, now: Callable[[], int], tenant: str, job_id: str,
    wait: float,
) -> Any:
    """The value job ``job_id`` returned, waiting up to ``wait`` seconds for it to end."""
    deadline = time.monotonic() + wait

    def read(tr: Transaction) -> JobInfo | None:
        return admin.lookup(tr.snapshot, layout, tenant, job_id, now())

    while True:
        job = db.transact(read)
        if job is None:
            raise JobNotFound(
                f"no job {job_id!r} in tenant {tenant!r}: the id is unknown, or the job "
                "finished without keep_result (see @job(keep_result=...)), or its kept "
                "result expired"
            )
        if job.state not in LIVE_STATES:
            return _ended(job)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResultTimeout(
                f"job {job_id!r} of tenant {tenant!r} has not finished (state {job.state}, "
                f"attempt {job.attempt}) after waiting {wait:g} s"
            )
        db.wait_for_change(min(left, WAKE_CAP))


def _ended(job: JobInfo) -> Any:
    """The value of a job that ended; the error that says how it ended otherwise."""
    where = f"job {job.job_id!r} of tenant {job.tenant!r}"
    if job.state == "completed":
        if job.result_note:
            raise ResultNotKept(f"{where} completed, but {job.result_note}", job.result_note)
        return job.result
    if job.state == "cancelled":
        raise JobCancelled(f"{where} was cancelled", job)
    if job.state == "discarded" or job.dead_kind == "discarded":
        raise JobDiscarded(f"{where} was discarded: {job.reason or job.last_error}", job)
    raise JobDead(
        f"{where} is dead ({job.dead_kind or 'failed'}): {job.reason or job.last_error}", job
    )
