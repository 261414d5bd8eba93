"""core.pointers.scan_due and lease_zone (DESIGN.md §4, transactions 2 and 3)."""

from __future__ import annotations

import pytest

from quick_queue.core.pointers import lease_zone, scan_due
from quick_queue.kv.errors import KVError
from tests.support.corekit import T0, US, ZONE_LEASE, Core, check_invariants


def test_scan_lists_due_zones_in_vesting_order(core: Core) -> None:
    core.enqueue("late", T0, delay=3 * US)
    core.enqueue("b", T0, delay=US)
    core.enqueue("a", T0, delay=US)
    core.enqueue("now", T0)
    core.enqueue("future", T0, delay=60 * US)
    due, nxt = core.scan(T0)
    assert due == [(T0, "now")] and nxt == T0 + US
    due, nxt = core.scan(T0 + 3 * US)
    assert due == [(T0, "now"), (T0 + US, "a"), (T0 + US, "b"), (T0 + 3 * US, "late")]
    assert nxt == T0 + 60 * US
    due, nxt = core.scan(T0 + 3 * US, peek_max=2)
    assert due == [(T0, "now"), (T0 + US, "a")]
    assert core.scan(T0 + 60 * US)[1] is None


def test_scan_is_a_snapshot_read(core: Core) -> None:
    """A scanner never conflicts with pointer changes committed while it scans."""
    core.enqueue("a", T0)
    for regular in (False, True):
        tr = core.db.create_transaction()
        if regular:  # the control: the same read without snapshot does conflict
            tr.get_range(*core.layout.due_until(T0 + US))
        else:
            assert scan_due(tr, core.layout, T0 + US, 100)[0] == [(T0, "a")]
        core.enqueue(f"new{regular}", T0 + US)  # a new due entry inside the scanned range
        core.visit("a", T0 + US, count=0)  # and a moved one
        tr.set(b"\x00probe", b"")
        if regular:
            with pytest.raises(KVError) as caught:
                tr.commit()
            assert caught.value.code == 1020
        else:
            tr.commit()


def test_lease_takes_a_due_zone(core: Core) -> None:
    core.enqueue("t", T0)
    token = core.lease("t", T0 + 5)
    assert token is not None
    s = core.store()
    p = s.pointers["t"]
    assert (p.token, p.lease_expiry, p.vesting) == (token, T0 + 5 + ZONE_LEASE, T0 + 5 + ZONE_LEASE)
    assert s.due == [(T0 + 5 + ZONE_LEASE, "t")]  # out of the scanners' way meanwhile
    assert core.scan(T0 + 5)[0] == []
    check_invariants(s, T0 + 5)


def test_lease_refuses_a_zone_not_due(core: Core) -> None:
    core.enqueue("t", T0, delay=10 * US)
    before = core.dump()
    assert core.lease("t", T0 + 10 * US - 1) is None
    assert core.lease("nobody", T0 + 10 * US) is None
    assert core.dump() == before
    assert core.lease("t", T0 + 10 * US) is not None


def test_lease_refuses_a_leased_zone_until_the_lease_expires(core: Core) -> None:
    core.enqueue("t", T0)
    first = core.lease("t", T0)
    assert first is not None
    assert core.lease("t", T0) is None
    assert core.lease("t", T0 + ZONE_LEASE - 1) is None
    second = core.lease("t", T0 + ZONE_LEASE)  # the holder died: the zone comes back
    assert second is not None and second != first
    assert core.store().pointers["t"].token == second


@pytest.mark.parametrize("first", ["a", "b"])
def test_racing_leases_exactly_one_commits(core: Core, first: str) -> None:
    core.enqueue("t", T0)
    trs = {name: core.db.create_transaction() for name in "ab"}
    for name, tr in trs.items():
        assert lease_zone(tr, core.layout, "t", f"token-{name}", T0, ZONE_LEASE)
    second = "b" if first == "a" else "a"
    trs[first].commit()
    with pytest.raises(KVError) as caught:
        trs[second].commit()
    assert caught.value.code == 1020
    assert core.store().pointers["t"].token == f"token-{first}"
    check_invariants(core.store(), T0)
