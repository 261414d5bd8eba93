"""Stored records: dead letters in the job record's own format, errors trimmed to fit the value
limit, undecodable records buried instead of poisoning their zone, max_retries resolved by the
worker when the producer fixed none. All on the real engine (memory://)."""

from __future__ import annotations

import json

import pytest

from quick_queue import errors
from quick_queue.core import admin
from quick_queue.core.dequeue import dequeue
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.models import VALUE_LIMIT, JobRecord, LeasedJob
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.support.corekit import T0, US, Core, check_invariants

GARBAGE = b"\xff\xfe not a record \x00\x81"


def _take(core: Core, n: int = 1, now: int = T0) -> list[LeasedJob]:
    taken = core.visit("t", now, count=n)
    assert len(taken) == n
    return taken


def _retry(job: LeasedJob, reason: str, **kw: object) -> Outcome:
    return Outcome("t", job.record.job_id, job.token, OutcomeKind.RETRY, at=T0 + US,
                   reason=reason, **kw)  # type: ignore[arg-type]


def _raw(core: Core, key: bytes) -> bytes:
    raw = core.db.transact(lambda tr: tr.get(key))
    assert raw is not None
    return raw


# -- one dead-letter format --------------------------------------------------------------------
def test_a_dead_letter_is_the_job_record_with_its_payload_text_unchanged(core: Core) -> None:
    # key order and a non-ASCII character: re-encoding the parsed payload would change the text
    payload = {"z": 1, "a": "caf\u00e9", "n": [1.5, None]}
    job_id = core.enqueue("t", T0, payload=payload, max_retries=0)
    zone = core.layout.zone("t")
    live_body = _raw(core, zone.item(job_id)).split(b"\n", 1)[1]
    [job] = _take(core)
    assert core.settle([_retry(job, "boom")], T0) == [True]
    dead = _raw(core, zone.dead_key(job_id))
    head, body = dead.split(b"\n", 1)
    assert body == live_body  # carried through, never parsed and re-encoded
    fields = json.loads(head)
    assert (fields["st"], fields["kd"], fields["a"]) == ("d", "failed", 1)
    assert "boom" in fields["r"]
    info = core.db.transact(admin.lookup, core.layout, "t", job_id)
    assert info is not None and info.payload == payload and info.dead_kind == "failed"


def test_a_dead_letter_in_the_old_format_is_still_read_and_retried(core: Core) -> None:
    old = json.dumps({"t": "mail", "p": {"to": "x"}, "pr": 5, "m": 2, "a": 3, "sn": 0,
                      "e": T0, "d": T0 + US, "kd": "failed", "r": "old reason", "k": None},
                     separators=(",", ":")).encode()
    key = core.layout.zone("t").dead_key("old1")
    core.db.transact(lambda tr: tr.set(key, old))
    [info] = core.db.transact(admin.dead_page, core.layout, "t", None, 10)[0][1:]
    assert (info.topic, info.payload, info.dead_kind, info.reason) == (
        "mail", {"to": "x"}, "failed", "old reason")
    assert core.retry_dead("t", "old1", T0 + 2 * US)
    [job] = core.visit("t", T0 + 2 * US)
    assert (job.record.topic, job.record.payload, job.record.priority) == ("mail", {"to": "x"}, 5)
    assert job.record.attempt == 1 and job.record.error == "old reason"


# -- errors trimmed to fit ---------------------------------------------------------------------
def test_a_long_error_on_a_near_limit_record_is_trimmed_not_refused(core: Core) -> None:
    job_id = core.enqueue("t", T0, payload={"blob": "x" * 99_500}, max_retries=1)
    zone = core.layout.zone("t")
    [job] = _take(core)
    error = "RuntimeError: " + "E" * 5000
    assert core.settle([_retry(job, error)], T0) == [True]  # was KVError 2103
    stored = _raw(core, zone.item(job_id))
    assert len(stored) <= VALUE_LIMIT
    record = JobRecord.decode(job_id, stored)
    assert record.error is not None and record.error.startswith("RuntimeError: EEE")
    assert record.error.endswith("trimmed to fit the record]")
    assert record.payload == {"blob": "x" * 99_500}  # the payload is never cut
    [job] = core.visit("t", T0 + US)
    assert core.settle([_retry(job, error)], T0 + US) == [True]
    dead = _raw(core, zone.dead_key(job_id))
    assert len(dead) <= VALUE_LIMIT
    info = core.db.transact(admin.lookup, core.layout, "t", job_id)
    assert info is not None and info.dead_kind == "failed"
    assert info.reason is not None and "last error: RuntimeError: EEE" in info.reason
    assert "lease expired" not in info.reason
    check_invariants(core.store(), T0 + US)


# -- undecodable records -----------------------------------------------------------------------
def _corrupt(core: Core, job_id: str, raw: bytes = GARBAGE) -> None:
    key = core.layout.zone("t").item(job_id)
    core.db.transact(lambda tr: tr.set(key, raw))


def test_dequeue_buries_an_unreadable_record_and_serves_its_neighbours(core: Core) -> None:
    ids = [core.enqueue("t", T0, payload={"n": n}) for n in range(3)]
    _corrupt(core, ids[1])
    info = core.db.transact(admin.lookup, core.layout, "t", ids[1], T0)
    assert info is not None and info.state == "unreadable" and info.payload == GARBAGE
    assert info.last_error and "UnicodeDecodeError" in info.last_error
    taken = core.visit("t", T0, count=10)
    assert [j.record.job_id for j in taken] == [ids[0], ids[2]]
    s = core.store()
    dead = s.dead[("t", ids[1])]
    assert dead.kind == "unreadable" and "could not be decoded" in dead.reason
    assert dead.payload == GARBAGE  # the raw bytes, kept
    assert s.stats[("?", "dead")] == 1
    check_invariants(s, T0)
    [listed] = core.db.transact(admin.dead_page, core.layout, "t", None, 10)
    assert listed[1].dead_kind == "unreadable" and listed[1].to_dict()["payload"] == {
        "unreadable_bytes_base64": "//4gbm90IGEgcmVjb3JkIACB"}
    with pytest.raises(errors.InvalidArgument, match="cannot run again"):
        core.retry_dead("t", ids[1], T0)


def test_an_unreadable_scheduled_record_is_buried_when_it_comes_due(core: Core) -> None:
    job_id = core.enqueue("t", T0, delay=5 * US)
    _corrupt(core, job_id, b'{"t": 1}\n{}')  # JSON, but not a record header
    assert core.visit("t", T0 + 5 * US) == []
    assert core.store().dead[("t", job_id)].kind == "unreadable"


def test_settle_isolates_an_unreadable_record_to_its_own_outcome(core: Core) -> None:
    for n in range(3):
        core.enqueue("t", T0, payload={"n": n})
    jobs = _take(core, 3)
    _corrupt(core, jobs[1].record.job_id)
    outcomes = [Outcome("t", j.record.job_id, j.token, OutcomeKind.DONE, topic="topic")
                for j in jobs]  # no lease_at: every one takes the full, decoding path
    assert core.settle(outcomes, T0) == [True, False, True]
    s = core.store()
    assert s.items == {} and s.dead[("t", jobs[1].record.job_id)].kind == "unreadable"
    assert s.stats[("topic", "completed")] == 2
    assert core.extend([("t", jobs[0].record.job_id, jobs[0].token)], T0) == [False]


def test_cancel_removes_an_unreadable_record(core: Core) -> None:
    job_id = core.enqueue("t", T0)
    _corrupt(core, job_id)
    assert core.cancel("t", job_id)
    assert core.db.transact(admin.lookup, core.layout, "t", job_id) is None


def test_a_dead_letter_that_is_itself_garbage_is_listed(core: Core) -> None:
    key = core.layout.zone("t").dead_key("bad")
    core.db.transact(lambda tr: tr.set(key, GARBAGE))
    [(_, info)] = core.db.transact(admin.dead_page, core.layout, "t", None, 10)
    assert (info.job_id, info.dead_kind, info.payload) == ("bad", "unreadable", GARBAGE)


# -- max_retries resolved where the handler is known -------------------------------------------
def test_no_explicit_max_retries_is_stored_as_none_and_the_handler_decides(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=None)
    zone = core.layout.zone("t")
    assert json.loads(_raw(core, zone.item(job_id)).split(b"\n")[0])["m"] is None
    [job] = _take(core)
    assert core.settle([_retry(job, "e1", max_retries=1)], T0) == [True]  # 1 of 2 runs
    [job] = core.visit("t", T0 + US)
    assert core.settle([_retry(job, "e2", max_retries=1)], T0 + US) == [True]
    assert core.store().dead[("t", job_id)].attempt == 2  # the handler's 1, not the default 3


def test_an_explicit_max_retries_wins_over_the_handlers(core: Core) -> None:
    job_id = core.enqueue("t", T0, max_retries=0)
    [job] = _take(core)
    assert core.settle([_retry(job, "e1", max_retries=5)], T0) == [True]
    assert core.store().dead[("t", job_id)].attempt == 1


def test_dequeue_resolves_max_retries_for_the_runtime_and_lease_expiry(db: Database) -> None:
    core = Core(db, Layout("resolve"))
    job_id = core.enqueue("t", T0, max_retries=None, topic="boom")

    def take(now: int) -> list[LeasedJob]:
        return db.transact(
            lambda tr: dequeue(tr, core.layout, "t", None, now, count=10,
                               item_lease=core.item_lease, promote_max=100,
                               min_inactive=core.min_inactive, new_token=core.new_token,
                               max_retries_of={"boom": 0}.get)
        )

    [job] = take(T0)
    assert job.record.max_retries == 0 and not job.record.retries_set
    # the worker dies; at the lease's expiry the handler's limit (0 retries) buries it
    assert take(job.record.at) == []
    assert core.store().dead[("t", job_id)].kind == "lease_expired"


def test_live_info_never_raises_for_a_view(core: Core) -> None:
    info = admin.live_info("t", "j1", GARBAGE, T0)
    assert (info.state, info.payload) == ("unreadable", GARBAGE)
    job_id = core.enqueue("t", T0, payload={"a": 1})
    raw = _raw(core, core.layout.zone("t").item(job_id))
    assert admin.live_info("t", job_id, raw).payload == {"a": 1}


@pytest.mark.parametrize(
    "header",
    [b'{"t":"x"}', b"[1,2]", b"7", b'{"t":"x","pr":1,"m":"3","st":"r","at":1,"sq":1,"e":1,'
     b'"a":0,"sn":0,"tk":null,"er":null,"k":null}',
     b'{"t":"x","pr":1,"m":null,"st":"r","at":1,"sq":1,"e":1,"a":0,"sn":0,"tk":5,"er":null,'
     b'"k":null}'],
)
def test_a_header_of_the_wrong_shape_is_unreadable_not_a_later_crash(header: bytes) -> None:
    with pytest.raises(errors.UnreadableRecord):
        JobRecord.decode("j", header + b"\n{}")
