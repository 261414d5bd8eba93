"""Issue 14: extending a lease writes small keys only, never the job record (its payload may be
100 kB), and every invariant of DESIGN.md §4 still holds: one entry per lease, no double
lease, fencing by token, lease loss detected, the reaper finds an extended lease at its
extended expiry, and ``get_job``/the read views show the real expiry.

Each test runs on the embedded engine and, with ``QUICK_QUEUE_FDB_CLUSTER_FILE`` set, on the
FoundationDB cluster (the ``db`` fixture's fdb leg)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import quick_queue as qq
from quick_queue import read_model
from quick_queue.core import admin
from quick_queue.core.settle import extend_leases
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.kv.errors import KVError, is_retryable
from quick_queue.models import LeasedJob
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.support.corekit import ITEM_LEASE, T0, US, Core, check_invariants

QueueFactory = Callable[..., qq.JobQueue]
BIG = "x" * 20_000
LATER = T0 + 20 * US  # an extension at this time pushes the lease to LATER + ITEM_LEASE


def _take(core: Core, payload: object = BIG, tenant: str = "t", **kw: object) -> LeasedJob:
    core.enqueue(tenant, T0, payload=payload, **kw)  # type: ignore[arg-type]
    [job] = core.visit(tenant, T0, count=1)
    return job


def _lease(job: LeasedJob, known: int | None = None) -> tuple[str, str, str, int]:
    return (job.tenant, job.record.job_id, job.token,
            job.record.at if known is None else known)


def _changed(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> dict[bytes, int]:
    """Keys written or cleared between two dumps, with the size of what each now holds."""
    return {k: len(after.get(k, b"")) for k in before.keys() | after.keys()
            if before.get(k) != after.get(k)}


def test_an_extension_leaves_the_record_alone_and_writes_small_keys(db: Database) -> None:
    core = Core(db, Layout("ext-small"))
    job = _take(core)
    item = core.layout.zone("t").item(job.record.job_id)
    before = core.dump(stats=False)
    assert core.extend([_lease(job)], LATER) == [True]
    after = core.dump(stats=False)
    changed = _changed(before, after)
    assert item not in changed and before[item] == after[item]  # the record: not rewritten
    assert len(changed) == 3 and sum(changed.values()) < 200, changed
    s = core.store()
    assert s.leased == [("t", LATER + ITEM_LEASE, job.record.job_id)]
    assert s.items[("t", job.record.job_id)].at == LATER + ITEM_LEASE  # (extension merged)
    check_invariants(s, LATER)


def test_get_job_and_the_read_views_show_the_extended_expiry(
    db: Database, clock: qq.ManualClock
) -> None:
    core = Core(db, Layout("default"))
    job = _take(core)
    assert core.extend([_lease(job)], LATER) == [True]
    queue = qq.JobQueue(db, clock=clock)
    expiry = (LATER + ITEM_LEASE) / US
    info = queue.get_job("t", job.record.job_id)
    assert info is not None and info.state == "leased"
    assert info.lease_expires_at is not None and info.lease_expires_at.timestamp() == expiry
    [listed] = read_model.zone_jobs(queue, "t")["leased"]
    assert listed.lease_expires_at is not None and listed.lease_expires_at.timestamp() == expiry


def test_the_reaper_takes_an_extended_lease_back_at_its_extended_expiry(db: Database) -> None:
    core = Core(db, Layout("ext-reap"))
    job = _take(core, max_retries=5)
    assert core.extend([_lease(job)], LATER) == [True]
    core.enqueue("t", T0 + ITEM_LEASE)  # makes the zone due when the first lease would end
    taken = core.visit("t", T0 + ITEM_LEASE, count=10)
    assert job.record.job_id not in [j.record.job_id for j in taken]  # still held
    check_invariants(core.store(), T0 + ITEM_LEASE)
    [again] = core.visit("t", LATER + ITEM_LEASE, count=10)  # the extended lease ended
    assert (again.record.job_id, again.record.attempt) == (job.record.job_id, 2)
    assert core.store().extensions == {}  # the old lease's extension record went with it
    check_invariants(core.store(), LATER + ITEM_LEASE)
    # the old holder is fenced off: its extension and its completion change nothing
    assert core.extend([_lease(job, LATER + ITEM_LEASE)], LATER + ITEM_LEASE) == [False]
    done = Outcome("t", job.record.job_id, job.token, OutcomeKind.DONE,
                   lease_at=LATER + ITEM_LEASE)
    assert core.settle([done], LATER + ITEM_LEASE) == [False]
    assert core.store().items[("t", job.record.job_id)].token == again.token


@pytest.mark.parametrize("kind", ["done-fast", "done", "retry", "dead", "cancel"])
def test_every_end_of_an_extended_lease_clears_its_entry_and_extension(
    db: Database, kind: str
) -> None:
    core = Core(db, Layout("ext-end"))
    job = _take(core, max_retries=3)
    assert core.extend([_lease(job)], LATER) == [True]
    expiry = LATER + ITEM_LEASE
    job_id = job.record.job_id
    if kind == "cancel":
        assert core.cancel("t", job_id)
    else:
        outcome = {
            "done-fast": Outcome("t", job_id, job.token, OutcomeKind.DONE, lease_at=expiry),
            "done": Outcome("t", job_id, job.token, OutcomeKind.DONE),
            "retry": Outcome("t", job_id, job.token, OutcomeKind.RETRY, at=LATER + US,
                             reason="boom"),
            "dead": Outcome("t", job_id, job.token, OutcomeKind.DEAD, reason="gone"),
        }[kind]
        assert core.settle([outcome], LATER) == [True]
    s = core.store()
    assert s.leased == [] and s.extensions == {}
    check_invariants(s, LATER)
    assert core.extend([_lease(job, expiry)], LATER + US) == [False]  # lease loss detected


def test_a_holder_behind_its_own_extension_still_finds_its_lease(db: Database) -> None:
    """An extension committed but its holder never heard (1021, a timeout): the holder's
    known expiry is the old one; the extension record leads to the entry."""
    core = Core(db, Layout("ext-behind"))
    job = _take(core)
    assert core.extend([_lease(job)], LATER) == [True]
    even_later = LATER + 10 * US
    assert core.extend([_lease(job, job.record.at)], even_later) == [True]
    assert core.extend([(job.tenant, job.record.job_id, job.token)], even_later + US) == [True]
    s = core.store()
    assert s.leased == [("t", even_later + US + ITEM_LEASE, job.record.job_id)]
    check_invariants(s, even_later)
    # a forged token gets nothing from the extension record
    assert core.extend([(job.tenant, job.record.job_id, "forged", job.record.at)],
                       even_later + 2 * US) == [False]


def test_an_extension_and_a_cancel_racing_cannot_both_commit(db: Database) -> None:
    core = Core(db, Layout("ext-race"))
    job = _take(core)
    assert core.extend([_lease(job)], LATER) == [True]  # extended once already
    tr = db.create_transaction()
    assert extend_leases(tr, core.layout, [_lease(job, LATER + ITEM_LEASE)], LATER + US,
                         ITEM_LEASE) == [True]
    assert core.cancel("t", job.record.job_id)  # commits first
    with pytest.raises(KVError) as refused:
        tr.commit()
    assert is_retryable(refused.value)  # 1020: rerun, it finds the lease gone
    assert db.transact(extend_leases, core.layout, [_lease(job, LATER + ITEM_LEASE)],
                       LATER + US, ITEM_LEASE) == [False]
    check_invariants(core.store(), LATER + US)


def test_a_capped_job_keeps_its_slot_while_its_extended_lease_holds(
    make_queue: QueueFactory, clock: qq.ManualClock, background: Any, wait_until: Any
) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    @qq.job(topic="capped")
    class Capped:
        def perform(self, payload: Any, meta: qq.JobMeta) -> None:
            runs.append(meta.job_id)
            if payload["hold"]:
                started.set()
                release.wait(10)

    holder = make_queue(Capped)
    holder.set_max_running("capped", 1)
    held = holder.enqueue("t", "capped", {"hold": True, "pad": BIG})
    drain = background(holder.drain, 1)
    assert started.wait(5)
    clock.advance(20)

    def extended() -> bool:
        info = holder.get_job("t", held)
        return info is not None and info.lease_expires_at is not None and (
            info.lease_expires_at.timestamp() == clock.now() + 30)

    wait_until(extended, what="the keeper to extend the held job's lease")
    clock.advance(15)  # past the lease the job was taken with, before its extended end
    waiting = holder.enqueue("u", "capped", {"hold": False})
    other = make_queue(Capped)
    assert other.drain().completed == 0  # its slot is still held: the cap stays 1
    # whichever worker met the second job handed it back unrun (a broken cap would have
    # left it leased to the busy holder, or run it in ``other``)
    info = holder.get_job("u", waiting)
    assert runs == [held] and info is not None and info.state == "scheduled", (runs, info)
    release.set()
    assert drain.result().completed >= 1


def test_lookup_shows_an_extended_leases_expiry(db: Database) -> None:
    core = Core(db, Layout("ext-lookup"))
    job = _take(core)
    assert core.extend([_lease(job)], LATER) == [True]
    info = db.transact(lambda tr: admin.lookup(tr, core.layout, "t", job.record.job_id))
    assert info is not None and info.lease_expires_at is not None
    assert info.lease_expires_at.timestamp() == (LATER + ITEM_LEASE) / US
