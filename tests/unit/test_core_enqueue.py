"""core.enqueue: the record, its index entry and the zone's pointer (DESIGN.md §4, txn 1)."""

from __future__ import annotations

import pytest

from quick_queue.core.enqueue import enqueue
from quick_queue.core.pointers import ASAP, EMPTY
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import KVError
from quick_queue.models import PointerRecord
from tests.support.corekit import ITEM_LEASE, MIN_INACTIVE, T0, US, Core, check_invariants


def _pointer_keys(core: Core, tenant: str) -> dict[bytes, bytes]:
    layout = core.layout
    keys = [layout.marker(tenant), layout.pointer(tenant)]
    dump = core.dump()
    out = {k: dump[k] for k in keys if k in dump}
    out.update({k: v for k, v in dump.items() if k.startswith(layout.due_prefix)})
    return out


def _untouched_by(core: Core, key: bytes, write: object) -> bool:
    """True when committing ``write()`` does not conflict with a transaction that read ``key``
    before it: that is, ``write`` did not write ``key``."""
    tr = core.db.create_transaction()
    tr.get(key)
    assert callable(write)
    write()
    tr.set(b"\x00probe", b"")
    try:
        tr.commit()
    except KVError as error:
        assert error.code == 1020
        return False
    return True


def test_ready_job(core: Core) -> None:
    job_id = core.enqueue("t", T0, topic="mail", payload={"to": "x"}, priority=7, max_retries=2)
    s = core.store()
    record = s.items[("t", job_id)]
    assert (record.state, record.at, record.seq, record.enqueued) == ("r", T0, T0, T0)
    assert (record.topic, record.payload, record.priority, record.max_retries) == (
        "mail", {"to": "x"}, 7, 2)
    assert (record.attempt, record.snoozes, record.token) == (0, 0, None)
    assert s.ready == [("t", 7, T0, job_id)]
    assert s.scheduled == [] and s.leased == []
    assert s.markers == {"t": ASAP}
    assert s.pointers["t"].vesting == T0 and s.pointers["t"].token is None
    assert s.due == [(T0, "t")]
    assert s.stats[("mail", "enqueued")] == 1
    check_invariants(s, T0)


def test_scheduled_job(core: Core) -> None:
    job_id = core.enqueue("t", T0, delay=10 * US)
    s = core.store()
    assert s.items[("t", job_id)].state == "s"
    assert s.items[("t", job_id)].at == T0 + 10 * US
    assert s.scheduled == [("t", T0 + 10 * US, job_id)]
    assert s.ready == []
    assert s.markers == {"t": T0 + 10 * US}
    assert s.due == [(T0 + 10 * US, "t")]
    check_invariants(s, T0)
    assert core.scan(T0 + 10 * US - 1)[0] == []
    assert core.scan(T0 + 10 * US)[0] == [(T0 + 10 * US, "t")]


def test_due_in_the_past_is_ready(core: Core) -> None:
    job_id = core.enqueue("t", T0, delay=-5 * US)
    s = core.store()
    assert s.items[("t", job_id)].state == "r"
    assert s.ready == [("t", 100, T0 - 5 * US, job_id)]
    check_invariants(s, T0)


def test_second_enqueue_into_active_zone_leaves_the_pointer_alone(core: Core) -> None:
    core.enqueue("t", T0)
    before = _pointer_keys(core, "t")
    for delay in (0, 5 * US, -US):
        core.enqueue("t", T0 + US, delay=delay)
    assert _pointer_keys(core, "t") == before
    # Not even rewritten with the same bytes: a reader of the marker or the record does not
    # conflict with a later enqueue into the zone.
    layout = core.layout
    assert _untouched_by(core, layout.pointer("t"), lambda: core.enqueue("t", T0 + 2 * US))
    assert _untouched_by(core, layout.marker("t"), lambda: core.enqueue("t", T0 + 2 * US))
    assert _untouched_by(core, layout.marker("t"),
                         lambda: core.enqueue("t", T0 + 2 * US, delay=US))
    check_invariants(core.store(), T0 + 2 * US)


def test_enqueue_of_a_later_job_into_a_parked_zone_leaves_the_pointer_alone(core: Core) -> None:
    core.enqueue("t", T0, delay=60 * US)
    before = _pointer_keys(core, "t")
    assert _untouched_by(core, core.layout.pointer("t"),
                         lambda: core.enqueue("t", T0, delay=61 * US))
    assert _untouched_by(core, core.layout.marker("t"),
                         lambda: core.enqueue("t", T0, delay=60 * US))
    assert _pointer_keys(core, "t") == before


def test_an_earlier_job_pulls_a_parked_pointer_earlier(core: Core) -> None:
    core.enqueue("t", T0, delay=60 * US)
    core.enqueue("t", T0, delay=10 * US)
    s = core.store()
    assert s.pointers["t"].vesting == T0 + 10 * US
    assert s.markers["t"] == T0 + 10 * US
    assert s.due == [(T0 + 10 * US, "t")]  # the old due entry is gone
    check_invariants(s, T0)
    core.enqueue("t", T0 + US)
    s = core.store()
    assert s.pointers["t"].vesting == T0 + US
    assert s.markers["t"] == ASAP
    assert s.due == [(T0 + US, "t")]
    check_invariants(s, T0 + US)


def test_slack_skips_tiny_moves(db: Database) -> None:
    core = Core(db, Layout("slack"), slack=5 * US)
    core.enqueue("t", T0, delay=60 * US)
    core.enqueue("t", T0, delay=56 * US)  # within the slack: not worth a pointer write
    assert core.store().pointers["t"].vesting == T0 + 60 * US
    check_invariants(core.store(), T0, slack=5 * US)
    core.enqueue("t", T0, delay=50 * US)
    assert core.store().pointers["t"].vesting == T0 + 50 * US


def test_enqueue_into_a_drained_zone_pulls_its_parked_pointer(db: Database) -> None:
    core = Core(db, Layout("parked"), min_inactive=2 * MIN_INACTIVE)
    [job] = core.visit("t", T0) if core.enqueue("t", T0) else []
    assert core.done(job, T0)
    # The zone is empty; the pointer still vests at the lease expiry. A visit then parks it
    # until min_inactive after the zone was last active.
    assert core.visit("t", T0 + ITEM_LEASE) == []
    s = core.store()
    assert s.markers["t"] == EMPTY
    assert s.pointers["t"].vesting == T0 + ITEM_LEASE + 2 * MIN_INACTIVE
    later = T0 + ITEM_LEASE + US
    core.enqueue("t", later)
    s = core.store()
    assert s.markers["t"] == ASAP
    assert s.pointers["t"].vesting == later
    check_invariants(s, later)


def test_enqueue_into_a_leased_zone_changes_only_the_marker(core: Core) -> None:
    """A leased pointer is left to its holder, who re-vests it for the new job on release."""
    core.enqueue("t", T0, delay=60 * US)
    t1 = T0 + 60 * US
    token = core.lease("t", t1)
    assert token is not None
    pointer_before = core.store().pointers["t"]
    core.enqueue("t", t1, delay=-US)  # due before the promise (t1): the marker moves to ASAP
    s = core.store()
    assert s.markers["t"] == ASAP
    assert s.pointers["t"].encode() == pointer_before.encode()  # still leased, same vesting
    check_invariants(s, t1)
    taken = core.dequeue("t", token, t1, count=1)
    assert len(taken) == 1
    s = core.store()
    assert s.pointers["t"].token is None
    assert s.pointers["t"].vesting == t1  # one ready job left: due now
    check_invariants(s, t1)


def test_enqueue_into_a_zone_about_to_be_collected(core: Core) -> None:
    """The holder of the lease of an empty, parked zone sees a job enqueued meanwhile and keeps
    the pointer instead of collecting it."""
    [job] = core.visit("t", T0) if core.enqueue("t", T0) else []
    core.done(job, T0)
    t1 = T0 + ITEM_LEASE + MIN_INACTIVE
    token = core.lease("t", t1)
    assert token is not None
    job_id = core.enqueue("t", t1)
    assert core.store().pointers["t"].token == token
    assert core.dequeue("t", token, t1, count=0) == []
    s = core.store()
    assert "t" in s.pointers and s.pointers["t"].vesting == t1 and s.markers["t"] == ASAP
    assert ("t", job_id) in s.items
    check_invariants(s, t1)


def test_zones_are_independent(core: Core) -> None:
    a = core.enqueue("a", T0)
    b = core.enqueue("a\x00b", T0, delay=5 * US)
    s = core.store()
    assert s.items.keys() == {("a", a), ("a\x00b", b)}
    assert s.pointers["a"].vesting == T0
    assert s.pointers["a\x00b"].vesting == T0 + 5 * US
    check_invariants(s, T0)


def test_key_makes_enqueue_idempotent(core: Core) -> None:
    first = core.enqueue("t", T0, key="order-1", payload={"n": 1})
    again = core.enqueue("t", T0 + US, key="order-1", payload={"n": 2})
    assert first == again
    s = core.store()
    assert list(s.items) == [("t", first)]
    assert s.items[("t", first)].payload == {"n": 1}
    assert s.items[("t", first)].key == "order-1"
    assert len(s.ready) == 1
    assert s.stats[("topic", "enqueued")] == 1
    other = core.enqueue("t", T0, key="order-2")
    assert other != first and len(core.store().items) == 2


def test_key_of_a_dead_job_is_still_a_no_op(core: Core) -> None:
    from quick_queue.outcomes import Outcome

    job_id = core.enqueue("t", T0, key="k")
    [job] = core.visit("t", T0)
    assert core.settle([Outcome("t", job_id, job.token, "discard", reason="no")], T0) == [True]
    assert core.enqueue("t", T0, key="k") == job_id
    s = core.store()
    assert s.items == {} and list(s.dead) == [("t", job_id)]


def test_key_of_a_completed_job_enqueues_again(core: Core) -> None:
    """Idempotency holds while the job is still stored; after completion the key is free."""
    job_id = core.enqueue("t", T0, key="k")
    [job] = core.visit("t", T0)
    core.done(job, T0)
    assert core.enqueue("t", T0 + US, key="k") == job_id
    assert core.store().items[("t", job_id)].attempt == 0


def test_aborted_caller_transaction_leaves_no_job(core: Core) -> None:
    tr = core.db.create_transaction()
    tr.set(b"app/order", b"1")
    enqueue(tr, core.layout, core.job("t", T0), T0, 0)
    tr.reset()  # the caller gives up: nothing of its transaction remains
    assert core.dump() == {}
    tr = core.db.create_transaction()
    tr.set(b"app/order", b"1")
    job_id = enqueue(tr, core.layout, core.job("t", T0), T0, 0)
    tr.commit()
    assert core.db.transact(lambda t: t.get(b"app/order")) == b"1"
    assert ("t", job_id) in core.store().items


@pytest.mark.parametrize("delay", [0, 10 * US])
def test_enqueue_many_in_one_transaction(core: Core, delay: int) -> None:
    jobs = [core.job(f"t{i % 3}", T0 + delay) for i in range(30)]
    ids = core.enqueue_jobs(jobs, T0)
    assert ids == [j.job_id for j in jobs]
    s = core.store()
    assert len(s.items) == 30 and len(s.pointers) == 3
    assert all(p.vesting == T0 + delay for p in s.pointers.values())
    check_invariants(s, T0)


def test_pointer_record_round_trip() -> None:
    p = PointerRecord(5, "tok", 7, 3)
    q = PointerRecord.decode(p.encode())
    assert (q.vesting, q.token, q.lease_expiry, q.last_active) == (5, "tok", 7, 3)
    assert q.leased(6) and not q.leased(7)


def test_every_enqueue_is_idempotent_by_job_id(core: Core) -> None:
    """Ids are made before the retry loop, so a retried enqueue of a job that did commit (or a
    repeated one in the same batch) finds it and writes nothing."""
    job = core.job("t", T0, payload={"n": 1})
    assert core.enqueue_jobs([job, job], T0) == [job.job_id, job.job_id]
    before = core.dump()
    assert core.enqueue_jobs([job], T0 + US) == [job.job_id]
    assert core.dump() == before
    s = core.store()
    assert len(s.items) == 1 and s.stats[("topic", "enqueued")] == 1


def test_enqueue_many_counts_once_per_topic(core: Core) -> None:
    stats: dict[tuple[str, str], int] = {}
    jobs = [core.job("t", T0, topic="a"), core.job("u", T0, topic="a"), core.job("t", T0)]

    def write(tr: Transaction) -> None:
        for job in jobs:
            enqueue(tr, core.layout, job, T0, 0, stats)

    core.db.transact(write)
    assert stats == {("a", "enqueued"): 2, ("topic", "enqueued"): 1}
    assert core.store().stats == {}  # the caller flushes the counts


def test_enqueue_many_matches_enqueue_one_by_one(db: Database) -> None:
    """The batched form (one read for the batch, markers tracked per tenant) leaves the same
    keyspace as enqueueing the same jobs one at a time in one transaction: including a zone
    created, then pulled earlier, in one batch, and a keyed job listed twice."""
    from quick_queue.core.enqueue import NewJob, enqueue_many

    def jobs(core: Core) -> list[NewJob]:
        return [
            core.job("a", T0 + 5 * US, job_id="a1"),
            core.job("b", T0, job_id="b1"),
            core.job("a", T0, job_id="a2"),  # earlier than the zone's promise: moves it
            core.job("a", T0, key="k", job_id="a-k"),
            core.job("a", T0, key="k", job_id="a-k"),  # the same keyed job again: once
            core.job("c", T0 + 9 * US, job_id="c1", priority=7),
        ]

    one = Core(db, Layout("one"))
    many = Core(db, Layout("many"))
    one.enqueue_jobs(jobs(one), T0)
    ids = db.transact(enqueue_many, many.layout, jobs(many), T0, many.slack)
    assert ids == ["a1", "b1", "a2", "a-k", "a-k", "c1"]

    def strip(core: Core) -> dict[bytes, bytes]:
        root = core.layout.root
        return {k[len(root):]: v for k, v in core.dump().items()}

    assert strip(many) == strip(one)
    check_invariants(many.store(), T0)


def test_enqueue_many_batch_loop_writes_what_enqueue_writes(db: Database) -> None:
    """enqueue_many writes most jobs of a batch in its own loop (ready now, no key or trace,
    their zone already promised "ready work"), with prefixes and record templates made once
    a batch: the keyspace is the one that enqueueing the jobs one at a time leaves, over
    tenants, priorities, retry limits, due times in the past, a non-ASCII topic, a traced job
    and a scheduled one between them."""
    from quick_queue.core.enqueue import NewJob, enqueue_many

    def jobs() -> list[NewJob]:
        out = []
        for n in range(24):
            tenant = "ab"[n % 2]
            topic = ("mail", "sms", "pöst")[n % 3]
            due = T0 - (n % 4) * US  # now or in the past: ready, at its own due time
            out.append(NewJob(tenant, f"j{n:02d}", topic, b'{"n":%d}' % n, (5, 100)[n // 2 % 2],
                              (None, 3)[n // 12], due, fresh=True))
        out.append(NewJob("a", "later", "mail", b"{}", 100, 3, T0 + 7 * US, fresh=True))
        out.append(NewJob("b", "traced", "mail", b"{}", 100, 3, T0,
                          trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                          fresh=True))
        out += [NewJob("a", f"k{n}", "mail", b"{}", 100 + n, 3, T0, fresh=True) for n in range(3)]
        return out

    one = Core(db, Layout("one"))
    many = Core(db, Layout("many"))
    one.enqueue_jobs(jobs(), T0)
    db.transact(enqueue_many, many.layout, jobs(), T0, many.slack)

    def strip(core: Core) -> dict[bytes, bytes]:
        root = core.layout.root
        return {k[len(root):]: v for k, v in core.dump().items()}

    assert strip(many) == strip(one)
    check_invariants(many.store(), T0)
