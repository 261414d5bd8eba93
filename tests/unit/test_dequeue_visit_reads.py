"""core.dequeue's first reads (DESIGN.md §4, transaction 4): a visit reads its zone's pointer,
the heads of its scheduled and leased indexes and its first ready entries together, in one
snapshot ``get_ranges`` (in flight together on FoundationDB: issue 10), and adds the read
conflicts of the regular reads they stand for explicitly. These tests pin which concurrent
writes to the pointer and the ready index make a visit's commit fail with 1020, whatever
reads produce the conflicts, and that the reads are made together."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core.dequeue import ZoneNotDue
from quick_queue.keys import Layout
from quick_queue.kv.api import ReadView
from quick_queue.kv.errors import KVError
from quick_queue.models import PointerRecord
from tests.support.corekit import T0, US, Core

NOW = T0 + 100 * US


def _ready_keys(core: Core, tenant: str) -> list[bytes]:
    zone = core.layout.zone(tenant)
    return [key for key in core.dump(stats=False) if key.startswith(zone.ready)]


def _commits(tr: Any) -> bool:
    try:
        tr.commit()
    except KVError as error:
        assert error.code == 1020, error
        return False
    return True


# (where a rival writes a ready entry, relative to the entries a visit read) -> whether it
# conflicts with a visit that leased 1 of 3 ready jobs (its limited read saw 2: up to just past
# the second) and with one that drained all 3 (its read reached the end of the index)
PROBES = {
    "before the first": (0, b"", {"leases one": True, "drains": True}),
    "between the first two": (0, b"\x00", {"leases one": True, "drains": True}),
    "just past the second read": (1, b"\x00", {"leases one": False, "drains": True}),
    "after the last": (2, b"\x00", {"leases one": False, "drains": True}),
}


@pytest.mark.parametrize("visit", ["leases one", "drains"])
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_a_visit_conflicts_with_ready_entries_added_where_it_read(
    core: Core, visit: str, probe: str
) -> None:
    for job_id in ("r1", "r2", "r3"):
        core.enqueue("t", NOW - 50 * US, job_id=job_id)
    keys = sorted(_ready_keys(core, "t"))
    place, suffix, conflicts = PROBES[probe]
    probe_key = keys[place][:-1] if probe == "before the first" else keys[place] + suffix
    consumer = core.db.create_transaction()
    taken = core.dequeue_fn(count=1 if visit == "leases one" else 5)(consumer, "t", None, NOW)
    assert len(taken) == (1 if visit == "leases one" else 3)
    rival = core.db.create_transaction()
    rival.set(probe_key, b"")
    rival.commit()
    assert _commits(consumer) is not conflicts[visit]


def test_a_visit_conflicts_with_a_write_to_its_pointer(core: Core) -> None:
    core.enqueue("t", NOW - 50 * US, job_id="r1")
    consumer = core.db.create_transaction()
    assert len(core.dequeue_fn(count=5)(consumer, "t", None, NOW)) == 1
    rival = core.db.create_transaction()
    rival.set(core.layout.pointer("t"), PointerRecord(NOW, None, 0, NOW).encode())
    rival.commit()
    assert not _commits(consumer)


def test_a_zone_passed_over_adds_only_its_pointers_conflict(core: Core) -> None:
    """A zone found not due (taken by another consumer) in a visit of several zones: a job
    added to it does not fail the visit's commit, a write to its pointer does."""
    core.enqueue("a", NOW - 50 * US, job_id="a1")
    core.enqueue("b", NOW - 50 * US, job_id="b1")
    assert core.take("b", NOW, count=1)  # b's pointer now vests at the lease's expiry
    for rival_writes_pointer in (False, True):
        consumer = core.db.create_transaction()
        with pytest.raises(ZoneNotDue):
            core.dequeue_fn(count=5)(consumer, "b", None, NOW)
        taken = core.dequeue_fn(count=5)(consumer, "a", None, NOW)
        rival = core.db.create_transaction()
        if rival_writes_pointer:
            rival.set(core.layout.pointer("b"), rival.get(core.layout.pointer("b")) or b"")
        else:
            zone = core.layout.zone("b")
            rival.set(zone.ready + b"\x00", b"")  # an entry before any the visit could read
        rival.commit()
        assert _commits(consumer) is not rival_writes_pointer
        if not rival_writes_pointer:
            assert [job.record.job_id for job in taken] == ["a1"]
            # (back to a zone with a pointer again for the next round)
            core.db.transact(lambda tr: tr.clear(core.layout.zone("b").ready + b"\x00"))
            core.enqueue("a", NOW - 40 * US, job_id="a2")


def test_a_visit_reads_its_pointer_heads_and_ready_entries_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One ``get_ranges`` of four ranges, and no other read before the jobs' records (fails
    before it: four reads, one after another)."""
    calls: list[str] = []
    for name in ("get", "get_range", "get_ranges", "get_many"):
        owners = {next(k for k in type(view).__mro__ if name in vars(k)) for view in _views()}
        for owner in owners:
            real = vars(owner)[name]

            def spy(self: Any, *args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                calls.append(f"{_name}:{len(args[0])}" if _name == "get_ranges" else _name)
                return _real(self, *args, **kw)

            monkeypatch.setattr(owner, name, spy)
    db = qq.open("memory://")
    try:
        core = Core(db, Layout("unit"))
        core.enqueue("t", NOW - 50 * US, job_id="r1")
        core.enqueue("t", NOW - 50 * US, job_id="r2")
        calls.clear()
        assert len(core.take("t", NOW, count=1) or []) == 1
    finally:
        db.close()
    assert calls[:2] == ["get_ranges:4", "get_many"], calls
    assert "get_range" not in calls and "get" not in calls, calls


def _views() -> list[ReadView]:
    db = qq.open("memory://")
    try:
        tr = db.create_transaction()
        return [tr, tr.snapshot]
    finally:
        db.close()
