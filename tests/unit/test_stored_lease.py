"""JobRecord.lease: a lease's stored value, built with fewer checks than ``encode`` (issue 10).
It must be ``encode``'s bytes exactly, for every record a lease can meet: text that is not
ASCII (escaped by the other formatter), lone surrogates, errors too long for the value limit
(trimmed), progress, traces, keys, producer-fixed or open retry limits, odd numbers."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from quick_queue.models import JobRecord
from quick_queue.stored import VALUE_LIMIT

texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),  # ASCII, controls too
    st.sampled_from(["caf\u00e9", "lone \udc80", "%d %s", '"\\', "\U0001f600", ""]),
)
optional = st.none() | texts
numbers = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def records(draw: st.DrawFn) -> JobRecord:
    record = JobRecord(
        draw(texts), draw(texts), None, draw(st.integers(-1000, 1000)),
        draw(st.none() | st.integers(0, 10**9)), "r", draw(numbers), draw(numbers),
        draw(numbers), attempt=draw(st.integers(0, 10**9)), snoozes=draw(st.integers(0, 10**6)),
        error=draw(optional | st.just("e" * (VALUE_LIMIT + 10))), key=draw(optional),
        payload_raw=draw(st.sampled_from([b"null", b'{"a":[1,2]}', b'"\\u00e9"'])),
    )
    record.trace = draw(optional)
    record.progress = draw(st.none() | st.integers() | st.dictionaries(texts, st.integers()))
    return JobRecord.decode(record.job_id, record.encode())  # as a lease reads it


@settings(max_examples=600, deadline=None)
@given(record=records(), expiry=numbers, token=texts)
def test_a_lease_stores_what_encode_would(record: JobRecord, expiry: int, token: str) -> None:
    expected = copy.copy(record)
    expected.state, expected.at, expected.token = "l", expiry, token
    expected.attempt += 1
    value = record.lease(expiry, token)
    assert value == expected.encode()
    assert {n: getattr(record, n) for n in JobRecord.__slots__} == {
        n: getattr(expected, n) for n in JobRecord.__slots__}
    again = JobRecord.decode(record.job_id, value)
    assert (again.state, again.at, again.token, again.attempt) == (
        "l", expiry, token, expected.attempt)


def test_a_plain_ready_record_is_leased_through_the_compiled_codec() -> None:
    raw = JobRecord.new_value("j", "mail", 5, None, "r", 7, 3, None, None, b'{"to":1}')
    record = JobRecord.decode("j", raw)
    assert record.lease(99, "tk01") == (
        b'{"t":"mail","pr":5,"m":null,"st":"l","at":99,"sq":7,"e":3,"a":1,"sn":0,'
        b'"tk":"tk01","er":null,"k":null}\n{"to":1}'
    )
