"""Contract: conflict detection (every engine behaves as FoundationDB's resolver does).

A commit fails with ``not_committed`` (1020) exactly when a key in its read-conflict set was
written by a transaction that committed after its read version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quick_queue.kv.api import Database
from quick_queue.kv.errors import NOT_COMMITTED, KVError
from tests.kv.commit_outcomes import commits, write_in_new

if TYPE_CHECKING:
    from conftest import Space


# -- read/write pairs ------------------------------------------------------------------------
def test_conflicting_read_write_pair_later_commit_gets_1020(db: Database, space: Space) -> None:
    k = space.k("x")
    space.write(k, b"0")
    t1, t2 = db.create_transaction(), db.create_transaction()
    assert t1.get(k) == b"0"
    assert t2.get(k) == b"0"
    t1.set(k, b"1")
    t2.set(k, b"2")
    t1.commit()
    with pytest.raises(KVError) as info:
        t2.commit()
    assert info.value.code == NOT_COMMITTED
    assert space.read(k) == b"1"


def test_write_skew_is_prevented(db: Database, space: Space) -> None:
    # each reads the other's key and writes its own: serializable means one must fail
    a, b = space.k("a"), space.k("b")
    t1, t2 = db.create_transaction(), db.create_transaction()
    assert t1.get(a) is None
    assert t2.get(b) is None
    t1.set(b, b"1")
    t2.set(a, b"2")
    t1.commit()
    assert not commits(t2)
    assert space.dump() == {b: b"1"}


def test_reads_of_other_keys_do_not_conflict(db: Database, space: Space) -> None:
    t1 = db.create_transaction()
    t1.get(space.k("a"))
    write_in_new(db, space.k("b"))
    write_in_new(db, space.k("a\x00"))  # the key right after: outside a point read
    t1.set(space.k("c"), b"1")
    assert commits(t1)


def test_read_version_is_taken_at_the_first_read(db: Database, space: Space) -> None:
    k = space.k("x")
    t1 = db.create_transaction()
    write_in_new(db, k, b"before")  # committed before t1 ever read: no conflict
    assert t1.get(k) == b"before"
    t1.set(k, b"after")
    assert commits(t1)


def test_reads_see_one_snapshot(db: Database, space: Space) -> None:
    a, b = space.k("a"), space.k("b")
    t1 = db.create_transaction()
    assert t1.get(a) is None
    write_in_new(db, b, b"new")
    assert t1.get(b) is None  # committed after t1's read version: invisible
    assert t1.snapshot.get(b) is None
    assert t1.get_range(space.begin, space.end) == []


def test_read_only_transactions_always_commit(db: Database, space: Space) -> None:
    k = space.k("x")
    t1 = db.create_transaction()
    t1.get(k)
    write_in_new(db, k)
    assert commits(t1)


def test_the_first_committer_wins_even_when_it_started_later(db: Database, space: Space) -> None:
    k = space.k("x")
    t1 = db.create_transaction()
    t1.get(k)
    t2 = db.create_transaction()
    t2.get(k)
    t2.set(k, b"2")
    t2.commit()
    t1.set(k, b"1")
    assert not commits(t1)
    assert space.read(k) == b"2"


# -- writes that never conflict ----------------------------------------------------------------
def test_blind_writes_never_conflict(db: Database, space: Space) -> None:
    k = space.k("x")
    space.write(k, b"0")
    t1, t2, t3 = (db.create_transaction() for _ in range(3))
    t1.set(k, b"1")
    t2.set(k, b"2")
    t3.clear(k)
    t3.clear_range(space.begin, space.end)
    t2.commit()
    t3.commit()
    t1.commit()  # last commit wins
    assert space.read(k) == b"1"


def test_atomic_ops_are_blind_and_never_conflict(db: Database, space: Space) -> None:
    k = space.k("counter")
    transactions = [db.create_transaction() for _ in range(5)]
    for tr in transactions:
        tr.get_read_version()
        tr.add(k, (1).to_bytes(8, "little"))
        tr.max(space.k("max"), b"\x07")
    for tr in transactions:
        tr.commit()
    assert space.read(k) == (5).to_bytes(8, "little")


def test_snapshot_reads_never_conflict(db: Database, space: Space) -> None:
    k, j = space.k("x"), space.k("y")
    space.write(k, b"0")
    t1 = db.create_transaction()
    assert t1.snapshot.get(k) == b"0"
    assert t1.snapshot[k] == b"0"
    assert t1.snapshot.get_range(space.begin, space.end) == [(k, b"0")]
    assert t1.snapshot.get_range_startswith(space.prefix, limit=1) == [(k, b"0")]
    write_in_new(db, k, b"1")
    write_in_new(db, space.k("new"), b"1")
    t1.set(j, b"1")
    assert commits(t1)


def test_snapshot_then_plain_read_of_the_same_key_conflicts(db: Database, space: Space) -> None:
    k = space.k("x")
    t1 = db.create_transaction()
    t1.snapshot.get(k)
    t1.get(k)
    write_in_new(db, k)
    t1.set(space.k("y"), b"1")
    assert not commits(t1)


# -- range reads ---------------------------------------------------------------------------------
def test_unlimited_range_read_conflicts_on_the_whole_range(db: Database, space: Space) -> None:
    space.write_many({space.k("a"): b"1", space.k("c"): b"1"})
    t1 = db.create_transaction()
    assert len(t1.get_range(space.k("a"), space.k("m"))) == 2
    write_in_new(db, space.k("m"))  # the end is exclusive
    t1.set(space.k("z"), b"1")
    assert commits(t1)

    t2 = db.create_transaction()
    t2.get_range(space.k("a"), space.k("m"))
    write_in_new(db, space.k("l\xff"))  # a phantom: a new key inside the range
    t2.set(space.k("z"), b"2")
    assert not commits(t2)


@pytest.mark.parametrize(
    ("written", "conflicts"),
    [
        ("", True),  # the range's begin, before the first key returned
        ("0", True),
        ("a", True),
        ("b", True),  # the last key returned
        ("b\x00", False),  # just past the last key returned
        ("c", False),  # the first key the limit cut off
        ("e", False),
        ("f", False),
    ],
)
def test_limited_range_read_conflicts_only_on_what_it_saw(
    db: Database, space: Space, written: str, conflicts: bool
) -> None:
    space.write_many({space.k(c): c.encode() for c in "abcde"})
    t1 = db.create_transaction()
    rows = t1.get_range(space.begin, space.end, limit=2)
    assert [k for k, _ in rows] == [space.k("a"), space.k("b")]
    write_in_new(db, space.k(written))
    t1.set(space.k("z"), b"1")
    assert commits(t1) is not conflicts


@pytest.mark.parametrize(
    ("written", "conflicts"),
    [
        ("f", True),  # between the first key returned and the range's end
        ("e", True),
        ("d", True),  # the last key returned (the lowest)
        ("d\x00", True),
        ("c\xff", False),  # just before the last key returned
        ("c", False),  # the first key the limit cut off
        ("a", False),
    ],
)
def test_limited_reverse_range_read_conflicts_only_on_what_it_saw(
    db: Database, space: Space, written: str, conflicts: bool
) -> None:
    space.write_many({space.k(c): c.encode() for c in "abcde"})
    t1 = db.create_transaction()
    rows = t1.get_range(space.begin, space.k("y"), limit=2, reverse=True)
    assert [k for k, _ in rows] == [space.k("e"), space.k("d")]
    write_in_new(db, space.k(written))
    t1.set(space.k("z"), b"1")
    assert commits(t1) is not conflicts


def test_limit_not_reached_conflicts_on_the_whole_range(db: Database, space: Space) -> None:
    space.write_many({space.k("a"): b"1"})
    t1 = db.create_transaction()
    assert len(t1.get_range(space.begin, space.k("m"), limit=5)) == 1
    write_in_new(db, space.k("k"))  # after the only key, but inside the range
    t1.set(space.k("z"), b"1")
    assert not commits(t1)


def test_empty_range_read_still_conflicts(db: Database, space: Space) -> None:
    t1 = db.create_transaction()
    assert t1.get_range(space.k("m"), space.k("n")) == []
    write_in_new(db, space.k("m5"))
    t1.set(space.k("z"), b"1")
    assert not commits(t1)


# -- explicit conflict ranges ------------------------------------------------------------------
def test_add_read_conflict_key_and_range(db: Database, space: Space) -> None:
    t1 = db.create_transaction()
    t1.get_read_version()
    t1.add_read_conflict_key(space.k("k"))
    write_in_new(db, space.k("k\x00"))  # a key is just itself
    t1.set(space.k("z"), b"1")
    assert commits(t1)

    t2 = db.create_transaction()
    t2.get_read_version()
    t2.add_read_conflict_key(space.k("k"))
    write_in_new(db, space.k("k"))
    t2.set(space.k("z"), b"2")
    assert not commits(t2)

    t3 = db.create_transaction()
    t3.get_read_version()
    t3.add_read_conflict_range(space.k("b"), space.k("d"))
    write_in_new(db, space.k("d"))  # the end is exclusive
    write_in_new(db, space.k("a\xff"))
    t3.set(space.k("z"), b"3")
    assert commits(t3)

    t4 = db.create_transaction()
    t4.get_read_version()
    t4.add_read_conflict_range(space.k("b"), space.k("d"))
    write_in_new(db, space.k("c\xff\xff"))
    t4.set(space.k("z"), b"4")
    assert not commits(t4)


def test_explicit_read_conflicts_without_a_read_version_see_only_later_commits(
    db: Database, space: Space
) -> None:
    k = space.k("k")
    t1 = db.create_transaction()
    t1.add_read_conflict_key(k)
    t1.add_read_conflict_range(space.begin, space.end)
    write_in_new(db, k)  # before t1's commit, but t1 has no read version yet
    t1.set(space.prefix + b"z", b"1")
    assert commits(t1)


def test_explicit_read_conflicts_after_get_read_version_conflict(
    db: Database, space: Space
) -> None:
    k = space.k("k")
    t1 = db.create_transaction()
    t1.get_read_version()
    t1.add_read_conflict_key(k)
    write_in_new(db, k)
    t1.set(space.k("z"), b"1")
    assert not commits(t1)


def test_read_version_increases_with_commits(db: Database, space: Space) -> None:
    before = db.create_transaction().get_read_version()
    write_in_new(db, space.k("x"))
    after = db.create_transaction().get_read_version()
    assert after > before


def test_add_write_conflict_key_makes_readers_conflict(db: Database, space: Space) -> None:
    k = space.k("k")
    reader = db.create_transaction()
    reader.get(k)
    writer = db.create_transaction()
    writer.add_write_conflict_key(k)
    writer.set(space.k("other"), b"1")
    writer.commit()
    assert space.read(k) is None  # a write conflict writes nothing
    reader.set(space.k("z"), b"1")
    assert not commits(reader)


def test_write_conflicts_alone_make_a_commit(db: Database, space: Space) -> None:
    reader = db.create_transaction()
    reader.get_range(space.k("b"), space.k("c"))
    writer = db.create_transaction()
    writer.add_write_conflict_range(space.k("a"), space.k("b\x00"))  # touches reader's "b"
    writer.commit()
    reader.set(space.k("z"), b"1")
    assert not commits(reader)

    reader = db.create_transaction()
    reader.get_range(space.k("b"), space.k("c"))
    writer = db.create_transaction()
    writer.add_write_conflict_range(space.k("a"), space.k("b"))  # ends just before "b"
    writer.add_write_conflict_key(space.k("c"))
    writer.commit()
    reader.set(space.k("z"), b"1")
    assert commits(reader)


def test_inverted_ranges_are_refused(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    for call in (tr.add_read_conflict_range, tr.add_write_conflict_range, tr.clear_range):
        with pytest.raises(KVError) as info:
            call(space.k("b"), space.k("a"))
            tr.commit()
        assert info.value.code == 2005
        tr.reset()


# -- clears conflict like writes --------------------------------------------------------------
@pytest.mark.parametrize("how", ["clear", "clear_range", "add", "max", "min"])
def test_every_kind_of_write_conflicts_with_a_reader(db: Database, space: Space, how: str) -> None:
    k = space.k("k")
    space.write(k, b"\x01")
    reader = db.create_transaction()
    reader.get(k)
    writer = db.create_transaction()
    if how == "clear":
        writer.clear(k)
    elif how == "clear_range":
        writer.clear_range(space.k("j"), space.k("l"))
    else:
        getattr(writer, how)(k, b"\x05")
    writer.commit()
    reader.set(space.k("z"), b"1")
    assert not commits(reader)


def test_get_before_write_conflicts_like_get(db: Database, space: Space) -> None:
    # On every engine: the latest value (as far as a commit can tell), and a read conflict, so
    # a write to the key after it fails the reader's commit.
    k, job = space.k("marker"), space.k("job")
    space.write(k, b"0")
    tr = db.create_transaction()
    assert tr.get_before_write(k) == b"0"
    write_in_new(db, k, b"1")
    tr.set(job, b"j")
    assert not commits(tr)
    assert space.read(job) is None
    tr = db.create_transaction()
    assert tr.get_before_write(k) == b"1"
    tr.set(job, b"j")
    assert commits(tr)
    assert space.read(job) == b"j"
