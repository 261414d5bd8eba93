"""core.dequeue clears the ready entries of a visit with one range clear (issue 10): the range
from the first entry read to just past the last must hold exactly the entries read, whatever
the ids (one the prefix of another, a NUL inside, text that is not ASCII), priorities and
times, and whatever became of each entry (leased, dangling, unreadable)."""

from __future__ import annotations

import pytest

from quick_queue.kv.api import Transaction
from tests.support.corekit import T0, Core, check_invariants

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
