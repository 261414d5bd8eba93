"""A completion's ``Outcome`` built by ``executor.done_outcome`` (issue 10) is the one the
generated ``__init__`` builds, field for field, and stays frozen."""

from __future__ import annotations

import dataclasses

import pytest

from quick_queue.consumer.executor import done_outcome
from quick_queue.outcomes import Kept, Outcome, OutcomeKind

KEPT = Kept(60_000_000, 5, 0.25, b"1", None, "noop", 1, 3, 0, 7, None, "key")


@pytest.mark.parametrize("kept", [None, KEPT])
@pytest.mark.parametrize("tenant, job_id, token, topic, lease_at", [
    ("t", "j1", "tk", "noop", 1_764_000_000_000_000),
    ("tenant\n", "é", "", "", 0),
])
def test_same_outcome_as_the_generated_init(
    tenant: str, job_id: str, token: str, topic: str, lease_at: int, kept: Kept | None
) -> None:
    built = done_outcome(tenant, job_id, token, topic, lease_at, kept)
    reference = Outcome(tenant, job_id, token, OutcomeKind.DONE, topic=topic,
                        lease_at=lease_at, kept=kept)
    names = [f.name for f in dataclasses.fields(Outcome)]
    assert list(vars(built)) == names  # every field, none more (a new field fails here)
    assert [getattr(built, n) for n in names] == [getattr(reference, n) for n in names]
    assert built == reference and hash(built) == hash(reference)
    assert repr(built) == repr(reference)
    assert type(built) is Outcome


def test_built_outcome_is_frozen() -> None:
    built = done_outcome("t", "j", "tk", "noop", 1, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.kind = OutcomeKind.RETRY  # type: ignore[misc]
