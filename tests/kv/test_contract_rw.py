"""Contract: reads, read-your-writes and FoundationDB's atomic operations, on every engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import KVError

if TYPE_CHECKING:
    from conftest import Space


def keys_of(rows: list[tuple[bytes, bytes]], space: Space) -> list[str]:
    return [k[len(space.prefix) :].decode() for k, _ in rows]


# -- plain reads ---------------------------------------------------------------------------------
def test_get_and_ranges_of_committed_data(db: Database, space: Space) -> None:
    data = {space.k(c): c.encode() * 2 for c in "abcde"}
    space.write_many(data)
    tr = db.create_transaction()
    assert tr.get(space.k("c")) == b"cc"
    assert tr[space.k("c")] == b"cc"
    assert tr.get(space.k("nope")) is None
    assert tr.get_range(space.begin, space.end) == sorted(data.items())
    assert keys_of(tr.get_range(space.k("b"), space.k("d")), space) == ["b", "c"]
    assert keys_of(tr.get_range(space.begin, space.end, limit=3), space) == ["a", "b", "c"]
    assert keys_of(tr.get_range(space.begin, space.end, reverse=True), space) == list("edcba")
    assert keys_of(tr.get_range(space.begin, space.end, limit=2, reverse=True), space) == [
        "e",
        "d",
    ]
    assert tr.get_range(space.k("d"), space.k("b")) == []  # begin after end reads nothing
    assert keys_of(tr.get_range_startswith(space.prefix, limit=1, reverse=True), space) == ["e"]


def test_uncommitted_writes_are_invisible_to_others(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("a"), b"1")
    assert space.read(space.k("a")) is None
    tr.commit()
    assert space.read(space.k("a")) == b"1"


def test_binary_keys_sort_bytewise(db: Database, space: Space) -> None:
    keys = [space.k(b) for b in (b"\x00", b"\x00\x00", b"\x01", b"\x7f", b"\x80", b"\xfe\xff")]
    space.write_many({k: b"" for k in keys})
    tr = db.create_transaction()
    assert [k for k, _ in tr.get_range(space.begin, space.end)] == keys
    assert tr.get(keys[0]) == b""  # an empty value is present, not None


def test_reserved_keys_are_refused(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    with pytest.raises(KVError) as info:
        tr.set(b"\xff/system", b"1")
        tr.commit()
    assert info.value.code == 2004


# -- read-your-writes ----------------------------------------------------------------------------
@pytest.fixture
def stored(space: Space) -> None:
    space.write_many({space.k(c): b"db-" + c.encode() for c in "aceg"})


@pytest.mark.usefixtures("stored")
def test_set_is_read_back(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("a"), b"new")
    tr[space.k("b")] = b"B"
    assert tr.get(space.k("a")) == b"new"
    assert tr.get(space.k("b")) == b"B"
    assert tr.snapshot.get(space.k("b")) == b"B"  # snapshot reads see own writes too
    assert tr.get_range(space.begin, space.end) == [
        (space.k("a"), b"new"),
        (space.k("b"), b"B"),
        (space.k("c"), b"db-c"),
        (space.k("e"), b"db-e"),
        (space.k("g"), b"db-g"),
    ]
    tr.commit()
    assert space.dump()[space.k("a")] == b"new"


@pytest.mark.usefixtures("stored")
def test_clear_is_read_back(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.clear(space.k("c"))
    del tr[space.k("e")]
    tr.clear(space.k("zz"))  # clearing what is absent is fine
    assert tr.get(space.k("c")) is None
    assert tr.snapshot.get(space.k("e")) is None
    assert keys_of(tr.get_range(space.begin, space.end), space) == ["a", "g"]
    tr.set(space.k("c"), b"back")
    assert tr.get(space.k("c")) == b"back"
    tr.commit()
    assert space.dump() == {space.k("a"): b"db-a", space.k("c"): b"back", space.k("g"): b"db-g"}


@pytest.mark.usefixtures("stored")
def test_clear_many_is_read_back(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("new"), b"n")
    tr.clear_many([space.k("c"), space.k("zz"), space.k("new"), space.k("c")])
    assert tr.get(space.k("new")) is None  # a set of this transaction, cleared after it
    assert keys_of(tr.get_range(space.begin, space.end), space) == ["a", "e", "g"]
    tr.clear_many([])
    tr.commit()
    assert space.dump() == {space.k(n): b"db-" + n.encode() for n in ("a", "e", "g")}


def test_clear_many_of_a_system_key_is_refused_at_commit(db: Database, space: Space) -> None:
    space.write(space.k("a"), b"1")
    tr = db.create_transaction()
    tr.clear_many([space.k("a"), b"\xff/system"])  # reported by the commit, as clear does
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == 2004
    assert space.read(space.k("a")) == b"1"  # nothing was cleared


@pytest.mark.usefixtures("stored")
def test_clear_range_is_read_back(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("d"), b"local")
    tr.clear_range(space.k("b"), space.k("f"))  # c, e and the local d
    assert tr.get(space.k("c")) is None
    assert tr.get(space.k("d")) is None
    assert keys_of(tr.get_range(space.begin, space.end), space) == ["a", "g"]
    tr.set(space.k("e"), b"again")
    tr.add(space.k("c"), b"\x01")  # an atomic op over a cleared key starts from nothing
    assert keys_of(tr.get_range(space.begin, space.end), space) == ["a", "c", "e", "g"]
    assert tr.get(space.k("c")) == b"\x01"
    assert tr.get_range(space.k("b"), space.k("f"), reverse=True) == [
        (space.k("e"), b"again"),
        (space.k("c"), b"\x01"),
    ]
    tr.commit()
    assert space.dump() == {
        space.k("a"): b"db-a",
        space.k("c"): b"\x01",
        space.k("e"): b"again",
        space.k("g"): b"db-g",
    }


@pytest.mark.usefixtures("stored")
def test_ranges_with_limits_merge_local_and_stored_rows(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("b"), b"L")
    tr.set(space.k("d"), b"L")
    tr.clear(space.k("c"))
    tr.set(space.k("h"), b"L")
    everything = ["a", "b", "d", "e", "g", "h"]
    for limit in range(1, 8):
        rows = tr.get_range(space.begin, space.end, limit=limit)
        assert keys_of(rows, space) == everything[:limit]
        rows = tr.get_range(space.begin, space.end, limit=limit, reverse=True)
        assert keys_of(rows, space) == everything[::-1][:limit]
    assert keys_of(tr.get_range(space.k("b"), space.k("g"), limit=2, reverse=True), space) == [
        "e",
        "d",
    ]
    assert keys_of(tr.snapshot.get_range(space.k("c"), space.end, limit=2), space) == ["d", "e"]


def test_clear_range_of_everything_then_rebuild(db: Database, space: Space) -> None:
    space.write_many({space.k(str(i)): b"x" for i in range(20)})
    tr = db.create_transaction()
    tr.clear_range(space.begin, space.end)
    assert tr.get_range(space.begin, space.end) == []
    tr.set(space.k("5"), b"y")
    assert tr.get_range(space.begin, space.end, limit=1, reverse=True) == [(space.k("5"), b"y")]
    tr.commit()
    assert space.dump() == {space.k("5"): b"y"}


def test_reset_forgets_writes(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("a"), b"1")
    tr.reset()
    assert tr.get(space.k("a")) is None
    tr.set(space.k("b"), b"2")
    tr.commit()
    assert space.dump() == {space.k("b"): b"2"}


# -- atomic operations: FoundationDB's byte semantics -------------------------------------------
def le(n: int, width: int) -> bytes:
    return n.to_bytes(width, "little")


ATOMIC_CASES = [
    # add: little-endian, missing value = zeros, wraps on overflow, result as long as param
    ("add", None, le(5, 8), le(5, 8)),
    ("add", le(41, 8), le(1, 8), le(42, 8)),
    ("add", le(2**64 - 1, 8), le(2, 8), le(1, 8)),  # overflow wraps
    ("add", b"\xff", b"\x01", b"\x00"),
    ("add", b"\xff\x00", b"\x01\x00", b"\x00\x01"),  # carries into the next byte
    ("add", b"\x01", le(1, 4), le(2, 4)),  # shorter value: zero-extended
    ("add", b"\x01\x02\x03", b"\x01", b"\x02"),  # longer value: truncated to the param
    ("add", le(10, 8), le(2**64 - 3, 8), le(7, 8)),  # adding "-3"
    # max / min: unsigned little-endian; a missing value stores the param
    ("max", None, b"\x03", b"\x03"),
    ("max", b"\x05", b"\x03", b"\x05"),
    ("max", b"\x03", b"\x05", b"\x05"),
    ("max", b"\x01\x02", b"\x02\x01", b"\x01\x02"),  # 0x0201 > 0x0102: not bytewise order
    ("max", b"\x07", b"\x00\x01", b"\x00\x01"),  # 7 < 256 once extended
    ("max", b"\x05\xff", b"\x03", b"\x05"),  # truncated to the param's length
    ("min", None, b"\x03", b"\x03"),
    ("min", b"\x05", b"\x03", b"\x03"),
    ("min", b"\x01\x02", b"\x02\x01", b"\x02\x01"),
    ("min", b"\x07", b"\x00\x01", b"\x07\x00"),  # the extended value is what is stored
    ("min", b"\x01\xff", b"\x03", b"\x01"),
]


@pytest.mark.parametrize(("op", "existing", "param", "expected"), ATOMIC_CASES)
def test_atomic_ops_match_foundationdb(
    db: Database,
    space: Space,
    op: str,
    existing: bytes | None,
    param: bytes,
    expected: bytes,
) -> None:
    k = space.k("v")
    if existing is not None:
        space.write(k, existing)
    tr = db.create_transaction()
    getattr(tr, op)(k, param)
    tr.commit()
    assert space.read(k) == expected
    # the same inside one transaction, read back before the commit
    if existing is not None:
        space.write(k, existing)
    else:
        space.clear()
    tr = db.create_transaction()
    getattr(tr, op)(k, param)
    assert tr.get(k) == expected
    assert tr.get_range(space.begin, space.end) == [(k, expected)]


def test_atomic_ops_compose_with_sets_and_each_other(db: Database, space: Space) -> None:
    k = space.k("n")
    space.write(k, le(10, 8))
    tr = db.create_transaction()
    tr.add(k, le(5, 8))
    tr.add(k, le(1, 8))
    assert tr.get(k) == le(16, 8)
    tr.max(k, le(100, 8))
    tr.min(k, le(50, 8))
    assert tr.get(k) == le(50, 8)
    tr.commit()
    assert space.read(k) == le(50, 8)

    tr = db.create_transaction()
    tr.set(k, le(1, 2))
    tr.add(k, le(1, 2))
    tr.clear(space.k("m"))
    tr.add(space.k("m"), le(3, 2))
    assert tr.get(k) == le(2, 2)
    assert tr.get(space.k("m")) == le(3, 2)
    tr.commit()
    assert space.dump() == {space.k("m"): le(3, 2), k: le(2, 2)}


@pytest.mark.parametrize("op", ["add", "max", "min"])
@pytest.mark.parametrize("clear", ["clear", "clear_range"])
def test_atomic_ops_after_a_clear_start_from_nothing(
    db: Database, space: Space, op: str, clear: str
) -> None:
    k = space.k("n")
    space.write(k, b"\x09")
    tr = db.create_transaction()
    if clear == "clear":
        tr.clear(k)
    else:
        tr.clear_range(space.begin, space.end)
    getattr(tr, op)(k, b"\x02")
    assert tr.get(k) == b"\x02"
    tr.commit()
    assert space.read(k) == b"\x02"


def test_atomic_ops_apply_to_the_value_at_commit(db: Database, space: Space) -> None:
    k = space.k("n")
    space.write(k, le(1, 8))
    tr = db.create_transaction()
    tr.add(k, le(1, 8))  # blind: not evaluated until commit
    space.write(k, le(100, 8))
    tr.commit()
    assert space.read(k) == le(101, 8)


def test_transaction_methods_via_transact(db: Database, space: Space) -> None:
    def bump(tr: Transaction, key: bytes) -> int:
        tr.add(key, le(1, 8))
        value = tr.get(key)
        assert value is not None
        return int.from_bytes(value, "little")

    assert [db.transact(bump, space.k("c")) for _ in range(3)] == [1, 2, 3]


# -- where FoundationDB and a naive engine differ (issue 14) ---------------------------------------
def test_an_oversized_value_is_reported_by_the_next_read_and_the_commit(
    db: Database, space: Space
) -> None:
    tr = db.create_transaction()
    tr.set(space.k("big"), b"v" * 100_001)  # no error here: FoundationDB's set returns nothing
    tr.set(space.k("fine"), b"v")
    with pytest.raises(KVError) as info:
        tr.get(space.k("other"))
    assert info.value.code == 2103
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == 2103
    assert space.dump() == {}


def test_an_oversized_key_is_reported_at_commit(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("k" * 10_001), b"v")
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == 2102


def test_reads_at_and_past_the_system_keys_are_refused(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    for read in (
        lambda: tr.get(b"\xff"),
        lambda: tr.get(b"\xff/anything"),
        lambda: tr.snapshot.get(b"\xff\x00"),
        lambda: tr.get_range(space.begin, b"\xff\x00"),
        lambda: tr.get_many([b"a", b"b", b"\xff/x"]),
    ):
        with pytest.raises(KVError) as info:
            read()
        assert info.value.code == 2004
    assert tr.get_range(b"\xfe", b"\xff") == []  # up to \xff itself is legal


def test_reads_of_system_keys_are_allowed_when_asked(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.options.set_read_system_keys()
    tr.get(b"\xff/no/such/key")  # allowed: whatever FoundationDB keeps there, it answers
    tr.get_range(b"\xff/no/such/", b"\xff/no/such0")


def test_waiting_on_a_versionstamp_before_commit_raises(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set_versionstamped_value(space.k("v"), b"\x00" * 10 + b"\x00\x00\x00\x00")
    stamp = tr.get_versionstamp()
    with pytest.raises(KVError, match="before commit"):
        stamp.wait()
    tr.commit()
    assert len(stamp.wait()) == 10


def test_clearing_past_the_system_keys_is_refused_at_commit(db: Database, space: Space) -> None:
    space.write(space.k("a"), b"1")
    tr = db.create_transaction()
    tr.clear_range(space.begin, b"\xff\x00")  # no error here: reported by the commit
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == 2004
    assert space.read(space.k("a")) == b"1"  # nothing was cleared
    tr = db.create_transaction()
    # Up to \xff itself is legal (from a key past every test's space: the cluster may be shared).
    tr.clear_range(b"\xfe\xff\xff\xff", b"\xff")
    tr.commit()
    assert space.read(space.k("a")) == b"1"
