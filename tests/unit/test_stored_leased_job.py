"""``LeasedJob``'s own ``__init__`` (issue 10) builds the frozen pair the generated one did."""

from __future__ import annotations

import dataclasses

import pytest

from quick_queue.stored import JobRecord, LeasedJob


def _record(token: str | None = "tk1") -> JobRecord:
    record = JobRecord("j1", "noop", {"i": 1}, 0, None, "l", 10, 5, 1)
    record.token = token
    return record


def test_fields_equality_hash_and_repr() -> None:
    record = _record()
    job = LeasedJob("t1", record)
    assert [f.name for f in dataclasses.fields(LeasedJob)] == ["tenant", "record"]
    assert (job.tenant, job.record, job.token) == ("t1", record, "tk1")
    assert job == LeasedJob(tenant="t1", record=record)
    assert job != LeasedJob("t2", record)
    assert repr(job) == f"LeasedJob(tenant='t1', record={record!r})"
    assert dataclasses.astuple(job)[0] == "t1"


def test_frozen_and_without_dict() -> None:
    job = LeasedJob("t1", _record())
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.tenant = "t2"  # type: ignore[misc]
    assert not hasattr(job, "__dict__")


def test_token_of_an_unleased_record_is_refused() -> None:
    with pytest.raises(AssertionError):
        _ = LeasedJob("t1", _record(token=None)).token
