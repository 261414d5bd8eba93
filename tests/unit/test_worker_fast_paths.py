"""The worker's per-job shortcuts (issue 10) read and write exactly what the general code did:
the job id cut out of a ready entry, the payload read by the JSON scanner alone, the settle
fast path's keys packed once."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quick_queue.core.dequeue import _packed_ids
from quick_queue.core.pointers import read_pointer
from quick_queue.jsoncodec import load
from quick_queue.keys import Layout, pack_str, unpack
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.support.corekit import ITEM_LEASE, T0, US, Core

ZONE = Layout("q").zone("tenant")
IDS = st.text(max_size=30)  # every str a job id may be, NULs and non-ASCII included


def packed_id(key: bytes) -> tuple[bytes, str]:
    """``_packed_ids`` of the one ready entry ``key``."""
    return _packed_ids([(key, b"")], len(ZONE.ready))[0]


@given(priority=st.integers(-(2**40), 2**40), seq=st.integers(0, 2**63), job_id=IDS)
def test_packed_id_is_what_unpack_and_pack_give(priority: int, seq: int, job_id: str) -> None:
    key = ZONE.ready_key(priority, seq, job_id)
    assert str(unpack(key, len(ZONE.ready))[2]) == job_id
    assert packed_id(key) == (pack_str(job_id), job_id)


@pytest.mark.parametrize("tail", [b"", b"\x14", b"\x14\x14", b"\x14\x14\x02ab", b"\x30",
                                  b"\x14\x14\x02\xff\x00", b"\x14\x14\x01ab\x00"])
def test_a_malformed_ready_entry_reads_or_fails_as_unpack_does(tail: bytes) -> None:
    key = ZONE.ready + tail

    def general(raw: bytes) -> tuple[bytes, str]:  # what _lease_ready did before
        job_id = str(unpack(raw, len(ZONE.ready))[2])
        return pack_str(job_id), job_id

    assert _outcome(key, packed_id) == _outcome(key, general)


def test_jobs_whose_ids_need_escaping_are_leased_and_completed(core: Core) -> None:
    ids = ["plain", "nul\x00inside", "é-non-ascii", "\x00", "ends\x00"]
    for n, job_id in enumerate(ids):
        core.enqueue("t", T0 + n, job_id=job_id, payload={"n": n})
    taken = core.visit("t", T0 + 10, count=10)
    assert [job.record.job_id for job in taken] == ids
    assert [job.record.payload for job in taken] == [{"n": n} for n in range(len(ids))]
    outcomes = [Outcome("t", job.record.job_id, job.token, OutcomeKind.DONE, topic="topic",
                        lease_at=job.record.at) for job in taken]
    assert core.settle(outcomes, T0 + 20) == [True] * len(ids)
    zone = core.layout.zone("t")
    left = [key for key in core.dump(stats=False)
            if key.startswith((zone.items, zone.ready, zone.leased))]
    assert left == []  # every record and index entry of the five jobs is gone


JSON_TEXTS = [
    '{"i":1}', ' {"a":1}', '[1,2] ', "1", '"x"', "NaN", "-Infinity", '{"a":1}x', "", "  ",
    "{", "[1,]", '{"a":1} {"b":2}', "1 2", "é", '"\\ud800"', '{"a":{"a":1,"a":2}}',
    "123456789012345678901234567890", "1e400", "\t[]\n", "[" * 5000 + "]" * 5000,
]


def _outcome(raw: bytes, fn: object) -> tuple[str, str]:
    try:
        return "ok", repr(fn(raw))  # type: ignore[operator]
    except Exception as error:  # noqa: BLE001 - the error itself is compared
        return type(error).__name__, str(error)


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_load_reads_and_refuses_as_json_loads(text: str) -> None:
    raw = text.encode()
    assert _outcome(raw, load) == _outcome(raw, lambda r: json.loads(r.decode()))


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_load_of_any_dumped_value(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1), f" {json.dumps(value)} "):
        raw = text.encode()
        assert _outcome(raw, load) == _outcome(raw, lambda r: json.loads(r.decode()))


@pytest.mark.parametrize("scheduled_in", [5 * US, 10**9 * US])
def test_a_visit_parks_the_zone_at_its_earliest_head(core: Core, scheduled_in: int) -> None:
    """The zone's next due time, read before the lease is written, counts the visit's own
    leases: the pointer vests at the earlier of the scheduled head and the lease expiry."""
    core.enqueue("t", T0, delay=scheduled_in)
    core.enqueue("t", T0)
    [job] = core.visit("t", T0 + 1, count=5)
    pointer = core.db.transact(read_pointer, core.layout, "t")
    assert pointer is not None and pointer.token is None
    assert pointer.vesting == min(T0 + scheduled_in, T0 + 1 + ITEM_LEASE) == (
        T0 + scheduled_in if scheduled_in < ITEM_LEASE else job.record.at)
