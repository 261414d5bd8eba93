"""keys.pack/unpack are byte-for-byte FoundationDB's tuple layer, and the layout's subspaces of
different tenants and queues never overlap."""

from __future__ import annotations

import fdb.tuple
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quick_queue import keys
from quick_queue.keys import Layout

# The widest integers packed in the 1..8-byte forms: FoundationDB packs +-(2**64 - 1) and beyond
# as big integers (type codes 0x1D/0x0B), which keys.pack refuses rather than mis-encode.
INT64 = (1 << 64) - 2

ints = st.one_of(
    st.integers(min_value=-INT64, max_value=INT64),
    st.sampled_from([0, 1, -1, 255, 256, -255, -256, INT64, -INT64, (1 << 63), -(1 << 63),
                     (1 << 63) - 1, -(1 << 63) + 1, 1 << 32, -(1 << 32)]),
)
texts = st.one_of(st.text(), st.text(alphabet=st.sampled_from("\x00\xffa\u00e9\u4e2d\U0001f600")))
blobs = st.one_of(st.binary(), st.binary().map(lambda b: b + b"\x00\xff\x00"))
elements = st.one_of(ints, texts, blobs)


@given(st.lists(elements, max_size=6).map(tuple))
def test_pack_is_fdb_tuple_pack(items: tuple[keys.Element, ...]) -> None:
    packed = keys.pack(items)
    assert packed == fdb.tuple.pack(items)
    assert keys.unpack(packed) == items
    assert fdb.tuple.unpack(packed) == items


@given(st.lists(elements, max_size=6).map(tuple))
def test_unpack_reads_fdb_output(items: tuple[keys.Element, ...]) -> None:
    assert keys.unpack(fdb.tuple.pack(items)) == items


@given(st.binary(max_size=8), st.lists(elements, min_size=1, max_size=4).map(tuple))
def test_unpack_from_offset(prefix: bytes, items: tuple[keys.Element, ...]) -> None:
    assert keys.unpack(prefix + keys.pack(items), len(prefix)) == items


@given(st.lists(ints, min_size=2, max_size=30))
def test_packed_ints_sort_like_ints(values: list[int]) -> None:
    by_key = sorted(values, key=lambda v: keys.pack((v,)))
    assert by_key == sorted(values)


@given(st.lists(st.tuples(ints, texts, blobs), min_size=2, max_size=20))
def test_packed_tuples_sort_like_tuples(values: list[tuple[int, str, bytes]]) -> None:
    # Element by element: strings by code point (UTF-8 preserves it), bytes lexicographically,
    # a shorter string before any extension of it, even one continuing with NUL.
    by_key = sorted(values, key=keys.pack)
    assert by_key == sorted(values)


@pytest.mark.parametrize("bad", [INT64 + 1, -INT64 - 1, 1 << 64, 1 << 80])
def test_integers_beyond_64_bits_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        keys.pack((bad,))


@pytest.mark.parametrize("bad", [True, 1.5, None, ("nested",)])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        keys.pack((bad,))  # type: ignore[arg-type]


@given(st.integers(min_value=-INT64, max_value=INT64), st.text())
def test_fast_packers_match_pack(number: int, text: str) -> None:
    assert keys.pack_int(number) == keys.pack((number,))
    assert keys.pack_str(text) == keys.pack((text,))


@given(texts, st.text(min_size=1))
def test_zone_keys_are_the_tuple_layers(tenant: str, name: str) -> None:
    """A zone's keys (made from pre-packed parts) are FoundationDB's packing of each tuple."""
    root = fdb.tuple.pack(("qq", name))
    zone = keys.Zone(root, tenant)
    assert zone.prefix == root + fdb.tuple.pack(("z", tenant))
    assert zone.items == zone.prefix + fdb.tuple.pack(("i",))
    assert zone.ready == zone.prefix + fdb.tuple.pack(("r",))
    assert zone.scheduled == zone.prefix + fdb.tuple.pack(("s",))
    assert zone.leased == zone.prefix + fdb.tuple.pack(("l",))
    assert zone.dead == root + fdb.tuple.pack(("d", tenant))
    assert zone.marker == root + fdb.tuple.pack(("pm", tenant))


def test_counter_round_trip() -> None:
    for value in (0, 1, -1, 1 << 40, -(1 << 40)):
        assert keys.read_counter(keys.counter(value)) == value
    assert keys.read_counter(None) == 0
    assert keys.read_counter(b"\x05") == 5  # FoundationDB's atomic add may leave short values


# -- disjoint subspaces ---------------------------------------------------------------------

TENANTS = ["a", "a\x00", "a\x00b", "ab", "a\xff", "b", "", "\x00", "é", "a b"]


def _zone_ranges(layout: Layout, tenant: str) -> dict[str, tuple[bytes, bytes]]:
    """The ranges the core reads for one zone: each ``[prefix, prefix + 0xFF)``."""
    zone = layout.zone(tenant)
    return {name: (p, p + b"\xff") for name, p in [
        ("items", zone.items), ("ready", zone.ready), ("scheduled", zone.scheduled),
        ("leased", zone.leased), ("dead", zone.dead),
    ]}


def _zone_keys(layout: Layout, tenant: str) -> dict[str, bytes]:
    zone = layout.zone(tenant)
    return {
        "items": zone.item("job\x00id"),
        "ready": zone.ready_key(5, 1_800_000_000_000_000, "job"),
        "scheduled": zone.scheduled_key(1_800_000_000_000_000, "job"),
        "leased": zone.leased_key(1_800_000_000_000_000, "job"),
        "dead": zone.dead_key("job"),
    }


def _all_keys(layout: Layout, tenant: str) -> list[bytes]:
    return [
        *_zone_keys(layout, tenant).values(),
        layout.marker(tenant), layout.pointer(tenant), layout.due(7, tenant),
        layout.stat(tenant, "enqueued"),
    ]


def _inside(key: bytes, rng: tuple[bytes, bytes]) -> bool:
    return rng[0] <= key < rng[1]


@pytest.mark.parametrize("tenant", TENANTS)
def test_zone_ranges_hold_exactly_their_own_keys(tenant: str) -> None:
    layout = Layout("q")
    ranges = _zone_ranges(layout, tenant)
    own = _zone_keys(layout, tenant)
    for name, rng in ranges.items():
        assert _inside(own[name], rng), (name, tenant)
        for other_name, key in own.items():
            if other_name != name:
                assert not _inside(key, rng), (name, other_name)
    for other in TENANTS:
        if other == tenant:
            continue
        for key in _all_keys(layout, other):
            for name, rng in ranges.items():
                assert not _inside(key, rng), f"{other!r}'s key inside {tenant!r}'s {name} range"


def test_pointer_keys_are_distinct_per_tenant() -> None:
    layout = Layout("q")
    for make in (layout.marker, layout.pointer, lambda t: layout.due(7, t)):
        made = [make(t) for t in TENANTS]
        assert len(set(made)) == len(TENANTS)
        for key, tenant in zip(made, TENANTS, strict=True):
            assert keys.unpack(key, len(layout.root))[-1] == tenant


def test_tenant_of_zone_key() -> None:
    layout = Layout("q")
    for tenant in TENANTS:
        for key in _zone_keys(layout, tenant).values():
            if key.startswith(layout.zones_prefix):
                assert layout.tenant_of_zone_key(key) == tenant


@pytest.mark.parametrize("name", ["a", "a\x00", "a\x00b", "ab", "default"])
def test_queues_are_disjoint(name: str) -> None:
    """Each queue's keys sit in ``[root, root + 0xFF)`` and in none of another queue's
    subspace ranges, even when one name extends another."""
    names = ["a", "a\x00", "a\x00b", "ab", "default"]
    layout = Layout(name)
    subspaces = [layout.zones_prefix, layout.dead_prefix, layout.marker_prefix,
                 layout.record_prefix, layout.due_prefix, layout.stats_prefix]
    for other_name in names:
        other = Layout(other_name)
        for tenant in TENANTS[:4]:
            for key in _all_keys(other, tenant):
                inside_root = _inside(key, (layout.root, layout.root + b"\xff"))
                assert inside_root == (other_name == name)
                for prefix in subspaces:
                    if other_name != name:
                        assert not _inside(key, (prefix, prefix + b"\xff"))


def test_subspaces_of_one_queue_are_disjoint() -> None:
    layout = Layout("q")
    prefixes = [layout.zones_prefix, layout.dead_prefix, layout.marker_prefix,
                layout.record_prefix, layout.due_prefix, layout.stats_prefix]
    for p in prefixes:
        for q in prefixes:
            if p != q:
                assert not q.startswith(p)


def test_until_bounds_are_inclusive() -> None:
    zone = Layout("q").zone("t")
    begin, end = zone.until(zone.scheduled, 1000)
    assert _inside(zone.scheduled_key(1000, "x" * 50), (begin, end))
    assert _inside(zone.scheduled_key(999, "x"), (begin, end))
    assert not _inside(zone.scheduled_key(1001, ""), (begin, end))
    begin, end = Layout("q").due_until(1000)
    assert _inside(Layout("q").due(1000, "\U0001f600"), (begin, end))
    assert not _inside(Layout("q").due(1001, ""), (begin, end))


def test_layout_rejects_empty_names() -> None:
    with pytest.raises(ValueError):
        Layout("")
