"""The job record's compiled header codec (issue 10, ``quick_queue.header``): records written
before it read back, records it writes read back with the plain ``json`` reader the earlier
releases used, and a header of the wrong shape is unreadable, never half-read."""

from __future__ import annotations

import json

import pytest

from quick_queue.errors import UnreadableRecord
from quick_queue.models import JobRecord

# A ready job and a dead letter exactly as the hand-formatted encoder wrote them.
OLD_READY = (
    b'{"t":"mail","pr":100,"m":null,"st":"r","at":1764255000000000,"sq":1764255000000000,'
    b'"e":1764255000000000,"a":0,"sn":0,"tk":null,"er":null,"k":null}\n{"to":"a@b"}'
)
OLD_DEAD = (
    b'{"t":"mail","pr":5,"m":2,"st":"d","at":7,"sq":3,"e":1,"a":3,"sn":1,"tk":null,'
    b'"er":null,"k":"k1","tp":"00-ab-cd-01","dd":7,"kd":"failed","r":"boom","raw":false}\n[1]'
)


def test_records_written_by_the_old_encoder_read_back() -> None:
    ready = JobRecord.decode("j1", OLD_READY)
    assert (ready.topic, ready.priority, ready.state, ready.at, ready.attempt) == (
        "mail", 100, "r", 1764255000000000, 0
    )
    assert not ready.retries_set and ready.token is None and ready.payload == {"to": "a@b"}
    dead = JobRecord.decode("j2", OLD_DEAD)
    assert (dead.state, dead.died, dead.dead_kind, dead.reason, dead.raw_body) == (
        "d", 7, "failed", "boom", False
    )
    assert (dead.max_retries, dead.retries_set, dead.key) == (2, True, "k1")
    assert dead.trace == "00-ab-cd-01"
    assert dead.snoozes == 1 and dead.payload == [1]


def test_the_new_encoding_is_the_same_json_for_an_old_reader() -> None:
    for raw in (OLD_READY, OLD_DEAD):
        record = JobRecord.decode("j", raw)
        head, _, body = record.encode().partition(b"\n")
        old_head = json.loads(raw.partition(b"\n")[0])
        assert json.loads(head) == {k: v for k, v in old_head.items() if k != "raw" or v}
        assert body == raw.partition(b"\n")[2]  # the payload is carried through untouched


def test_a_leased_record_round_trips() -> None:
    record = JobRecord.decode("j", OLD_READY)
    record.state, record.at, record.attempt, record.token = "l", 99, 1, "tok"
    again = JobRecord.decode("j", record.encode())
    assert (again.state, again.at, again.attempt, again.token) == ("l", 99, 1, "tok")


@pytest.mark.parametrize("text", ["caf\u00e9 \U0001f600", "lone \udc80 surrogate"])
def test_text_that_is_not_ascii_is_escaped_as_before(text: str) -> None:
    record = JobRecord.decode("j", OLD_READY)
    record.error = text
    raw = record.encode()
    assert raw.isascii()  # \u escapes, as json writes them: the size check counts these
    assert JobRecord.decode("j", raw).error == text


@pytest.mark.parametrize(
    ("field", "value"),
    [("pr", True), ("at", 1.5), ("st", "x"), ("tk", 3), ("m", "3"), ("t", None)],
)
def test_a_header_field_of_the_wrong_type_is_unreadable(field: str, value: object) -> None:
    head = json.loads(OLD_READY.partition(b"\n")[0])
    head[field] = value
    raw = json.dumps(head).encode() + b"\n{}"
    with pytest.raises(UnreadableRecord):
        JobRecord.decode("j", raw)


def test_a_header_missing_a_field_is_unreadable() -> None:
    head = json.loads(OLD_READY.partition(b"\n")[0])
    del head["sn"]
    with pytest.raises(UnreadableRecord):
        JobRecord.decode("j", json.dumps(head).encode() + b"\n{}")


@pytest.mark.parametrize(
    ("topic", "key", "trace", "retries"),
    [("mail", None, None, None), ("mail", "k-1", "00-ab-cd-01", 4),
     ("caf\u00e9", "\u00e9", None, 0)],
)
def test_a_new_jobs_value_is_the_records_encoding(
    topic: str, key: str | None, trace: str | None, retries: int | None
) -> None:
    value = JobRecord.new_value("j", topic, 7, retries, "s", 50, 40, key, trace, b'{"a":1}')
    record = JobRecord("j", topic, None, 7, retries, "s", 50, 50, 40, key=key,
                       payload_raw=b'{"a":1}')
    record.trace = trace
    assert value == record.encode()
    again = JobRecord.decode("j", value)
    assert (again.topic, again.key, again.trace, again.retries_set) == (
        topic, key, trace, retries is not None
    )
