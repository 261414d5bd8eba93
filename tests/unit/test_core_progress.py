"""Progress reports (issue 12): ``meta.progress`` stores the last report in the job's record
while this worker's lease holds, throttled; ``get_job`` shows it; it goes with the record."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

import quick_queue as qq
from quick_queue.core import admin
from quick_queue.meta import JobMeta
from quick_queue.models import LeasedJob
from quick_queue.progress import ProgressWriter
from tests.support.corekit import Core

NOW = 1_800_000_000_000_000


def _leased(core: Core) -> tuple[LeasedJob, JobMeta]:
    core.enqueue("shop", NOW)
    [job] = core.visit("shop", NOW)
    record = job.record
    meta = JobMeta(job.tenant, record.topic, record.job_id, record.attempt, 3,
                   record.enqueued, record.at, record.priority)
    meta.bind_progress(ProgressWriter(core.db, core.layout), job.token)
    return job, meta


def _progress(core: Core, job: LeasedJob) -> Any:
    info = core.db.transact(lambda tr: admin.lookup(tr, core.layout, "shop", job.record.job_id))
    return None if info is None else info.progress


class Step(pydantic.BaseModel):
    done: int
    of: int


def test_a_report_is_shown_while_the_job_runs_and_goes_with_it(core: Core) -> None:
    job, meta = _leased(core)
    assert meta.progress({"done": 1, "of": 10}) is True
    assert _progress(core, job) == {"done": 1, "of": 10}
    assert meta.progress({"done": 2, "of": 10}) is False  # throttled: within the interval
    assert _progress(core, job) == {"done": 1, "of": 10}
    assert meta.progress(Step(done=9, of=10), force=True) is True
    assert _progress(core, job) == {"done": 9, "of": 10}
    stored = core.record("shop", job.record.job_id)
    assert stored is not None and stored.progress == {"done": 9, "of": 10}
    assert core.done(job, NOW + 1)
    assert core.record("shop", job.record.job_id) is None


def test_a_report_after_the_lease_is_gone_writes_nothing(core: Core) -> None:
    job, meta = _leased(core)
    assert core.cancel("shop", job.record.job_id)
    before = core.dump()
    assert meta.progress(50, force=True) is False
    assert core.dump() == before  # a late report never brings a cancelled job back


def test_no_report_from_a_transactional_handler_or_an_unbound_meta(core: Core) -> None:
    _, meta = _leased(core)
    meta.tr = core.db.create_transaction()
    assert meta.progress(1, force=True) is False
    unbound = JobMeta("shop", "t", "j", 1, 3, 0, 0, 100)
    assert unbound.progress(1) is False


def test_bad_reports_are_refused_clearly(core: Core) -> None:
    _, meta = _leased(core)
    with pytest.raises(qq.InvalidArgument, match="JSON data"):
        meta.progress({1, 2})
    with pytest.raises(qq.InvalidArgument, match="at most 4,096"):
        meta.progress("x" * 5000)


def test_progress_async_reports_from_a_coroutine(core: Core) -> None:
    job, meta = _leased(core)

    async def handler() -> tuple[bool, bool]:
        first = await meta.progress_async("half way")
        return first, await meta.progress_async("throttled")

    assert asyncio.run(handler()) == (True, False)
    assert _progress(core, job) == "half way"
