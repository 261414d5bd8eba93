"""JobMeta.of_record (the consumer's fast path, one per leased job) builds what __init__
builds from the same record, slot for slot."""

from __future__ import annotations

import math

from quick_queue.meta import JobMeta, LeaseFlag
from quick_queue.models import JobRecord


def _slots(meta: JobMeta) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in JobMeta.__slots__:
        value = getattr(meta, name)
        out[name] = type(value) if isinstance(value, LeaseFlag) else value
    return out


def test_of_record_sets_every_slot_as_init_does() -> None:
    record = JobRecord("job-1", "topic", None, 7, 5, "l", 123_456, 100, 99, attempt=2,
                       snoozes=3, token="tok", payload_raw=b"{}")
    fast = JobMeta.of_record("tenant", record)
    slow = JobMeta("tenant", "topic", "job-1", 2, 5, 99, 123_456, 7, 3)
    assert _slots(fast) == _slots(slow)
    assert fast._progress_at == -math.inf and fast.tr is None
    assert fast.lease_lost is not slow.lease_lost and not fast.lease_lost.is_set()
    assert fast.enqueued_at == slow.enqueued_at and fast.lease_deadline == slow.lease_deadline


def test_each_meta_has_its_own_lease_flag() -> None:
    record = JobRecord("j", "t", None, 0, None, "l", 1, 1, 1, payload_raw=b"{}")
    first, second = JobMeta.of_record("a", record), JobMeta.of_record("a", record)
    first.lease_lost.set()
    assert first.lease_lost.is_set() and not second.lease_lost.is_set()
