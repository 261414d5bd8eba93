"""``PointerRecord``'s stored value (issue 10: a zone visit decodes and encodes its pointer
once each, and both now take shortcuts): the bytes must stay what ``jsoncodec.dump`` writes,
and reading must give what ``jsoncodec.load`` gives, values and errors, for every pointer a
store can hold, including ones the shortcuts do not cover."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quick_queue.jsoncodec import dump, load
from quick_queue.stored import PointerRecord

times = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(min_value=2**63)
tokens = st.none() | st.text(max_size=12)


def _fields(pointer: PointerRecord) -> tuple[Any, ...]:
    return (pointer.vesting, pointer.token, pointer.lease_expiry, pointer.last_active)


@settings(max_examples=400, deadline=None)
@given(vesting=times, token=tokens, expiry=times, last_active=times)
def test_encode_writes_what_dump_writes_and_decode_reads_it_back(
    vesting: int, token: str | None, expiry: int, last_active: int
) -> None:
    pointer = PointerRecord(vesting, token, expiry, last_active)
    raw = pointer.encode()
    assert raw == dump([vesting, token, expiry, last_active])
    assert _fields(PointerRecord.decode(raw)) == (vesting, token, expiry, last_active)
    assert [type(f) for f in _fields(PointerRecord.decode(raw))] == [
        type(f) for f in (vesting, token, expiry, last_active)]


@pytest.mark.parametrize("raw", [
    b"[1.5,null,0,2]",  # a float time, as json reads it
    b' [1, "tk", 2, 3] ',  # spaces
    b"[true,null,0,0]",  # a bool where an int is: read as json reads it
    b"[1,null,0,%d]" % (2**70),  # past 64 bits
    b'[1,"caf\\u00e9",2,3]',
])
def test_decode_reads_other_shapes_as_load_does(raw: bytes) -> None:
    pointer = PointerRecord.decode(raw)
    expected = load(raw)
    assert list(_fields(pointer)) == expected
    assert [type(f) for f in _fields(pointer)] == [type(f) for f in expected]


@pytest.mark.parametrize("raw", [b"[1,null,0]", b"not json", b"[1,null,0,2,5]", b"{}"])
def test_decode_refuses_what_load_refuses_or_cannot_unpack(raw: bytes) -> None:
    try:
        v, tk, le, la = load(raw)
    except Exception as error:  # noqa: BLE001 - the same type is expected below
        expected: type[Exception] = type(error)
    else:  # pragma: no cover - every case here is refused
        raise AssertionError((v, tk, le, la))
    with pytest.raises(expected):
        PointerRecord.decode(raw)
