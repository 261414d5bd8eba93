"""core.dequeue clears the index entries a visit read (ready ones it leases, scheduled ones
and expired leases it promotes) with one range clear each (issue 10): the range from the
first entry read to just past the last must hold exactly the entries read, whatever the ids
(one the prefix of another, a NUL inside, text that is not ASCII), priorities and times, and
whatever became of each entry (leased, dangling, unreadable)."""

from __future__ import annotations

import pytest

from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
from tests.support.corekit import T0, US, Core, check_invariants

# Job ids whose ready keys sit next to each other: "a" is a prefix of the others, the packed
# form of "a\x00b" holds "a"'s packed form plus an escaped NUL, and non-ASCII text packs to
# bytes above every ASCII one.
IDS = ["a", "a\x00b", "a\x00", "ab", "b", "\u00e9t\u00e9", "a" * 40, "\x01", "z\U0001f600"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, len(IDS) - 1])
def test_a_visit_clears_exactly_the_ready_entries_it_read(core: Core, count: int) -> None:
    for job_id in IDS:
        core.enqueue("t", T0, job_id=job_id)
    taken = core.visit("t", T0, count=count)
    zone = core.layout.zone("t")
    expected = sorted(IDS, key=lambda i: zone.ready_key(0, T0, i))
    assert [j.record.job_id for j in taken] == expected[:count]
    s = core.store()
    assert [r[3] for r in s.ready] == expected[count:]  # nothing past the last one read
    assert sorted(job_id for _, _, job_id in s.leased) == sorted(expected[:count])
    check_invariants(s, T0)
    rest = core.visit("t", T0 + 1, count=len(IDS))
    assert [j.record.job_id for j in rest] == expected[count:]
    assert core.store().ready == []


def test_entries_that_are_not_leased_are_cleared_with_the_others(core: Core) -> None:
    """A dangling ready entry (its record gone) and an unreadable record between leasable
    ones: both entries go (the first dropped, the second buried), the rest stay ready."""
    ids = [core.enqueue("t", T0 + n, priority=n % 2) for n in range(6)]
    zone = core.layout.zone("t")
    order = sorted(ids, key=lambda i: (ids.index(i) % 2, ids.index(i)))  # priority, then time

    def damage(tr: Transaction) -> None:
        tr.clear(zone.item(order[1]))
        tr.set(zone.item(order[2]), b"not a record")

    core.db.transact(damage)
    taken = core.visit("t", T0 + 10, count=4)
    assert [j.record.job_id for j in taken] == [order[0], order[3]]
    s = core.store()
    assert [r[3] for r in s.ready] == order[4:]
    assert list(s.dead) == [("t", order[2])] and s.dead[("t", order[2])].kind == "unreadable"
    assert ("t", order[1]) not in s.items and ("t", order[2]) not in s.items


@pytest.mark.parametrize("promote_max", [1, 2, 4, len(IDS) - 1])
def test_promotion_clears_exactly_the_scheduled_entries_it_read(
    db: Database, promote_max: int
) -> None:
    """The scheduled entries a visit promotes go with one range clear too: due ones past
    ``promote_max`` and ones not yet due stay scheduled, whatever their ids."""
    core = Core(db, Layout("promote-clear"), promote_max=promote_max)
    for job_id in IDS:
        core.enqueue("t", T0, delay=US, job_id=job_id)
    late = core.enqueue("t", T0, delay=5 * US, job_id="a\x00c")  # not due at T0 + US
    zone = core.layout.zone("t")
    expected = sorted(IDS, key=lambda i: zone.scheduled_key(T0 + US, i))
    core.visit("t", T0 + US, count=0)
    s = core.store()
    assert sorted(r[3] for r in s.ready) == sorted(expected[:promote_max])
    assert [job_id for _, _, job_id in s.scheduled] == [*expected[promote_max:], late]
    check_invariants(s, T0 + US)


@pytest.mark.parametrize("promote_max", [1, 3, len(IDS)])
def test_expired_leases_are_cleared_exactly_as_read(db: Database, promote_max: int) -> None:
    """Expired lease entries read by a visit go with one range clear: the ones past
    ``promote_max`` and the lease not yet expired keep their entries."""
    core = Core(db, Layout("expire-clear"), promote_max=promote_max)
    for job_id in IDS:
        core.enqueue("t", T0, job_id=job_id)
    first = core.visit("t", T0, count=len(IDS))
    core.enqueue("t", T0 + US, job_id="a\x00c")
    [later] = core.visit("t", T0 + US, count=1)  # its lease expires a second after the rest
    expiry = first[0].record.at
    zone = core.layout.zone("t")
    expected = sorted(IDS, key=lambda i: zone.leased_key(expiry, i))
    core.visit("t", expiry, count=0)
    s = core.store()
    assert sorted(r[3] for r in s.ready) == sorted(expected[:promote_max])
    assert [job_id for _, _, job_id in s.leased] == [*expected[promote_max:], later.record.job_id]
    check_invariants(s, expiry)
