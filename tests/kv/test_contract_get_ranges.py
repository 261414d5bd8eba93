"""Contract: ``get_ranges`` reads what the same ``get_range`` calls read, with their read
conflicts (none through ``tr.snapshot``), read-your-writes included, on every engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quick_queue.kv.api import Database
from quick_queue.kv.errors import KVError
from tests.kv.commit_outcomes import commits, write_in_new

if TYPE_CHECKING:
    from conftest import Space


def ranges_of(space: Space) -> list[tuple[bytes, bytes, int]]:
    k = space.k
    return [
        (k("b"), k("b\x00"), 1),  # one key, as a point
        (k("c"), k("d"), 2),  # cut by its limit
        (k("d"), k("e"), 0),  # unlimited
        (k("e"), k("f"), 5),  # the limit not reached
        (k("g"), k("h"), 3),  # empty
        (k("f"), k("c"), 4),  # begin after end: nothing
        (k("a"), k("c"), 2),  # overlaps the first
    ]


def stored(space: Space) -> None:
    space.write_many({
        space.k(key): key.encode()
        for key in ("a", "b", "c1", "c2", "c3", "d1", "d2", "d3", "e1", "e2")
    })


# the transaction's own writes before the read (read-your-writes)
WRITES = {
    "none": lambda tr, k: None,
    "set in a cut range": lambda tr, k: tr.set(k("c0"), b"new"),
    "set past a cut range's limit": lambda tr, k: tr.set(k("c9"), b"new"),
    "clear": lambda tr, k: tr.clear(k("c1")),
    "clear_range": lambda tr, k: tr.clear_range(k("b"), k("c2")),
    "atomic add": lambda tr, k: tr.add(k("e1"), b"\x01"),
    "elsewhere": lambda tr, k: tr.set(k("z"), b"new"),
}


@pytest.mark.parametrize("how", sorted(WRITES))
@pytest.mark.parametrize("snapshot", [False, True])
def test_get_ranges_reads_what_get_range_reads(
    db: Database, space: Space, how: str, snapshot: bool
) -> None:
    stored(space)
    tr = db.create_transaction()
    WRITES[how](tr, space.k)
    reader = tr.snapshot if snapshot else tr
    ranges = ranges_of(space)
    together = reader.get_ranges(ranges)
    assert together == [reader.get_range(b, e, limit=limit) for b, e, limit in ranges]
    assert together[1] == sorted(together[1])  # in key order, as get_range
    assert reader.get_ranges([]) == []


@pytest.mark.parametrize(
    ("written", "conflicts"),
    [
        ("b", True),  # the one-key range
        ("b\x00", False),
        ("c", True),  # the cut range: up to just past its last key returned (c2)
        ("c2", True),
        ("c2\x00", False),
        ("c3", False),
        ("d9", True),  # the unlimited range, past its last key
        ("e9", True),  # the range whose limit was not reached: all of it
        ("f", False),  # between the ranges
        ("g5", True),  # the empty range
    ],
)
def test_get_ranges_conflicts_as_each_get_range(
    db: Database, space: Space, written: str, conflicts: bool
) -> None:
    stored(space)
    t1 = db.create_transaction()
    t1.get_ranges(ranges_of(space)[:5])
    write_in_new(db, space.k(written))
    t1.set(space.k("z"), b"1")
    assert commits(t1) is not conflicts


@pytest.mark.parametrize("written", ["b", "c1", "d9", "e9", "g5"])
def test_snapshot_get_ranges_never_conflicts(db: Database, space: Space, written: str) -> None:
    stored(space)
    t1 = db.create_transaction()
    t1.snapshot.get_ranges(ranges_of(space))
    write_in_new(db, space.k(written))
    t1.set(space.k("z"), b"1")
    assert commits(t1)


def test_get_ranges_sees_one_snapshot(db: Database, space: Space) -> None:
    stored(space)
    t1 = db.create_transaction()
    t1.get(space.k("a"))  # the read version is taken
    write_in_new(db, space.k("c0"))
    assert t1.get_ranges([(space.k("c"), space.k("d"), 1)]) == [[(space.k("c1"), b"c1")]]


def test_get_ranges_refuses_what_get_range_refuses(db: Database, space: Space) -> None:
    tr = db.create_transaction()  # (FoundationDB's system keys)
    with pytest.raises(KVError):
        tr.get_ranges([(space.begin, b"\xff\x01", 1)])
