"""core.dequeue's read conflicts on the zone's scheduled and leased indexes (DESIGN.md §4,
transaction 4): a visit reads each index's head with a snapshot read and adds the conflicts
of the regular reads it stands for explicitly (issue 10: two range reads fewer in a visit that
empties its zone). These tests pin which concurrent writes to those indexes make a visit's
commit fail with 1020, whatever reads produce the conflicts."""

from __future__ import annotations

import pytest

from quick_queue.keys import pack_int, pack_str
from quick_queue.kv.errors import KVError
from tests.support.corekit import ITEM_LEASE, T0, US, Core

NOW = T0 + 100 * US
SCHEDULED_HEAD = NOW + 10 * US  # the first scheduled job (not due at NOW)
LEASE_HEAD = NOW + 5 * US  # the expiry of a running job's lease (not expired at NOW)


def _zone(core: Core) -> None:
    """Zone "t" at ``NOW``: two ready jobs, two scheduled for later, one leased job whose
    lease expires after NOW."""
    core.enqueue("t", LEASE_HEAD - ITEM_LEASE, job_id="running")
    [job] = core.visit("t", LEASE_HEAD - ITEM_LEASE, count=1)
    assert job.record.at == LEASE_HEAD
    for job_id in ("r1", "r2"):
        core.enqueue("t", NOW - 50 * US, job_id=job_id)
    core.enqueue("t", NOW, job_id="s1", delay=SCHEDULED_HEAD - NOW)
    core.enqueue("t", NOW, job_id="s2", delay=SCHEDULED_HEAD + 10 * US - NOW)


# (index, time of the probe entry, whether it is the scheduled head's own key cleared)
PROBES = {
    "scheduled, due": ("s", NOW - 1, False),
    "scheduled, before the head": ("s", NOW + 5 * US, False),
    "scheduled, the head cleared": ("s", SCHEDULED_HEAD, True),
    "scheduled, after the head": ("s", SCHEDULED_HEAD + 5 * US, False),
    "leased, expired": ("l", NOW - 1, False),
    "leased, before the head": ("l", NOW + 1 * US, False),
}
# which probes conflict with a visit that empties the zone (its release reads the scheduled
# head: a job scheduled before it, or the head moved, changes when the zone is next due) and
# with one that leaves ready work (it reads only the due entries)
CONFLICTS = {
    "drains": {"scheduled, due", "scheduled, before the head", "scheduled, the head cleared",
               "leased, expired"},
    "leaves ready work": {"scheduled, due", "leased, expired"},
}


@pytest.mark.parametrize("probe", sorted(PROBES))
@pytest.mark.parametrize("visit", sorted(CONFLICTS))
def test_a_visit_conflicts_with_writes_to_what_decides_its_release(
    core: Core, visit: str, probe: str
) -> None:
    _zone(core)
    zone = core.layout.zone("t")
    index, at, clear_head = PROBES[probe]
    count = 5 if visit == "drains" else 1
    consumer = core.db.create_transaction()
    taken = core.dequeue_fn(count=count)(consumer, "t", None, NOW)
    assert len(taken) == (2 if visit == "drains" else 1)

    rival = core.db.create_transaction()
    if clear_head:
        rival.clear(zone.scheduled + pack_int(at) + pack_str("s1"))
    else:
        prefix = zone.scheduled if index == "s" else zone.leased
        rival.set(prefix + pack_int(at) + pack_str("probe"), b"")
    rival.commit()

    if probe in CONFLICTS[visit]:
        with pytest.raises(KVError) as caught:
            consumer.commit()
        assert caught.value.code == 1020
    else:
        consumer.commit()
        assert {j.record.job_id for j in taken} <= {"r1", "r2"}
