"""core.settle: what happens to a leased job after its run, fenced by the lease token
(DESIGN.md §4, transactions 5-7)."""

from __future__ import annotations

import pytest

from quick_queue.core.settle import lease_loss, still_leased
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.models import LeasedJob
from quick_queue.outcomes import LeaseLoss, Outcome
from tests.support.corekit import ITEM_LEASE, T0, US, Core, check_invariants


def _take(core: Core, now: int = T0, **kw: object) -> LeasedJob:
    core.enqueue("t", now, **kw)  # type: ignore[arg-type]
    taken = core.visit("t", now, count=1)
    assert len(taken) == 1
    return taken[0]


def _out(job: LeasedJob, kind: str, **kw: object) -> Outcome:
    return Outcome(job.tenant, job.record.job_id, job.token, kind, **kw)  # type: ignore[arg-type]


def test_done_deletes_the_job(core: Core) -> None:
    job = _take(core, topic="mail")
    assert core.settle([_out(job, "done", topic="mail")], T0 + 1) == [True]
    s = core.store()
    assert s.items == {} and s.leased == [] and s.dead == {}
    assert s.stats[("mail", "completed")] == 1
    check_invariants(s, T0 + 1)


def test_done_fast_path_and_its_fallback(core: Core) -> None:
    """With ``lease_at`` (the lease expiry the worker knows) completion checks the token in
    the leased entry; a moved lease falls back to the record check, a wrong token fails."""
    job = _take(core)
    assert core.settle([_out(job, "done", lease_at=job.record.at)], T0) == [True]
    assert core.store().items == {}
    job = _take(core)
    assert core.extend([("t", job.record.job_id, job.token)], T0 + US) == [True]
    assert core.settle([_out(job, "done", lease_at=job.record.at)], T0 + US) == [True]
    assert core.store().items == {}
    job = _take(core)
    stale = Outcome("t", job.record.job_id, "forged", "done", lease_at=job.record.at)
    before = core.dump(stats=False)
    assert core.settle([stale], T0) == [False]
    assert core.dump(stats=False) == before


def test_retry_reschedules_with_the_error(core: Core) -> None:
    job = _take(core, max_retries=3)
    at = T0 + 5 * US
    assert core.settle([_out(job, "retry", at=at, reason="boom")], T0 + 1) == [True]
    s = core.store()
    r = s.items[("t", job.record.job_id)]
    assert (r.state, r.at, r.seq, r.attempt, r.error, r.token) == ("s", at, at, 1, "boom", None)
    assert s.scheduled == [("t", at, job.record.job_id)] and s.leased == []
    assert s.pointers["t"].vesting == at  # pulled in from the lease expiry
    check_invariants(s, T0 + 1)
    assert core.visit("t", at - 1) == []
    [again] = core.visit("t", at)
    assert again.record.attempt == 2 and again.record.error == "boom"


def test_retry_due_now_is_ready(core: Core) -> None:
    job = _take(core)
    assert core.settle([_out(job, "retry", at=T0, reason="x")], T0 + 3) == [True]
    s = core.store()
    r = s.items[("t", job.record.job_id)]
    assert (r.state, r.at) == ("r", T0)
    assert s.pointers["t"].vesting <= T0 + 3
    check_invariants(s, T0 + 3)


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_run_out_into_the_dead_letters(core: Core, max_retries: int) -> None:
    job_id = core.enqueue("t", T0, max_retries=max_retries, topic="x")
    now = T0
    for attempt in range(1, max_retries + 2):
        [job] = core.visit("t", now)
        assert job.record.attempt == attempt
        assert core.settle([_out(job, "retry", at=now + US, reason=f"e{attempt}")], now)
        now += US
    s = core.store()
    assert s.items == {} and s.scheduled == []
    dead = s.dead[("t", job_id)]
    assert dead.kind == "failed" and dead.attempt == max_retries + 1
    assert f"e{max_retries + 1}" in dead.reason
    assert s.stats[("x", "dead")] == 1
    check_invariants(s, now)


def test_snooze_spends_no_attempt(core: Core) -> None:
    job = _take(core, max_retries=0)
    at = T0 + 10 * US
    assert core.settle([_out(job, "snooze", at=at)], T0) == [True]
    r = core.store().items[("t", job.record.job_id)]
    assert (r.state, r.at, r.attempt, r.snoozes) == ("s", at, 0, 1)
    [again] = core.visit("t", at)
    assert again.record.attempt == 1  # max_retries=0, yet it runs again


def test_snoozes_are_capped(db: Database) -> None:
    core = Core(db, Layout("snooze"), max_snoozes=2)
    job_id = core.enqueue("t", T0)
    now = T0
    for n in range(3):
        [job] = core.visit("t", now)
        assert core.settle([_out(job, "snooze", at=now + US)], now) == [True]
        now += US
        if n < 2:
            assert core.store().items[("t", job_id)].snoozes == n + 1
    s = core.store()
    assert s.items == {}
    assert s.dead[("t", job_id)].kind == "snoozed_out"
    check_invariants(s, now)


def test_discard_and_dead_keep_the_reason(core: Core) -> None:
    job = _take(core)
    assert core.settle([_out(job, "discard", reason="spam")], T0) == [True]
    other = _take(core)
    assert core.settle(
        [_out(other, "dead", reason="no handler", dead_kind="unknown_topic")], T0
    ) == [True]
    s = core.store()
    assert s.items == {}
    a, b = s.dead[("t", job.record.job_id)], s.dead[("t", other.record.job_id)]
    assert (a.kind, a.reason) == ("discarded", "spam")
    assert (b.kind, b.reason) == ("unknown_topic", "no handler")
    check_invariants(s, T0)


def test_release_puts_the_job_back_at_its_place(core: Core) -> None:
    first = core.enqueue("t", T0)
    second = core.enqueue("t", T0 + 1)
    [job] = core.visit("t", T0 + 2, count=1)
    assert job.record.job_id == first
    assert core.settle([_out(job, "release")], T0 + 3) == [True]
    r = core.store().items[("t", first)]
    assert (r.state, r.at, r.seq, r.attempt, r.token) == ("r", T0, T0, 0, None)
    check_invariants(core.store(), T0 + 3)
    taken = core.visit("t", T0 + 4, count=10)
    assert [j.record.job_id for j in taken] == [first, second]
    assert taken[0].record.attempt == 1


@pytest.mark.parametrize("kind", ["done", "retry", "snooze", "discard", "dead", "release"])
@pytest.mark.parametrize("how", ["forged", "expired-and-retaken", "cancelled", "settled"])
def test_stale_token_changes_nothing(core: Core, kind: str, how: str) -> None:
    job = _take(core)
    now = T0 + 1
    if how == "forged":
        job = LeasedJob(job.tenant, type(job.record).decode(job.record.job_id,
                                                            job.record.encode()))
        job.record.token = "forged"
    elif how == "expired-and-retaken":
        now = T0 + ITEM_LEASE
        assert core.visit("t", now)[0].record.job_id == job.record.job_id
    elif how == "cancelled":
        assert core.cancel("t", job.record.job_id)
    else:
        assert core.settle([_out(job, "retry", at=T0 + US)], now) == [True]
    before = core.dump(stats=False)
    stale_before = core.stat("*", "stale")
    outcome = _out(job, kind, at=now + US, reason="late", lease_at=job.record.at)
    assert core.settle([outcome], now) == [False]
    assert core.dump(stats=False) == before
    assert core.stat("*", "stale") == stale_before + 1
    assert not core.db.transact(still_leased, core.layout, "t", job.record.job_id, job.token)


def test_settle_many_applies_each_outcome(core: Core) -> None:
    jobs = []
    for tenant in ("a", "b", "c"):
        core.enqueue(tenant, T0)
        jobs += core.visit(tenant, T0)
    outcomes = [
        _out(jobs[0], "done"),
        Outcome("b", jobs[1].record.job_id, "stale", "done"),
        _out(jobs[2], "retry", at=T0 + US, reason="x"),
    ]
    assert core.settle(outcomes, T0) == [True, False, True]
    s = core.store()
    assert ("a", jobs[0].record.job_id) not in s.items
    assert s.items[("b", jobs[1].record.job_id)].state == "l"
    assert s.items[("c", jobs[2].record.job_id)].state == "s"
    check_invariants(s, T0)


@pytest.mark.parametrize("first_kind", ["done", "retry", "snooze", "release", "discard"])
@pytest.mark.parametrize("fast", [True, False])
def test_a_lease_settles_once_per_batch(core: Core, first_kind: str, fast: bool) -> None:
    """Two outcomes for one lease in one batch: the first applies, the second is stale."""
    job = _take(core)
    lease_at = job.record.at if fast else 0
    first = _out(job, first_kind, at=T0 + US, reason="r", lease_at=lease_at)
    second = _out(job, "done", lease_at=lease_at)
    assert core.settle([first, second], T0) == [True, False]
    s = core.store()
    if first_kind in ("done", "discard"):
        assert ("t", job.record.job_id) not in s.items
    else:
        assert s.items[("t", job.record.job_id)].state in "rs"
    check_invariants(s, T0)


def test_unknown_outcome_kind_is_an_error(core: Core) -> None:
    job = _take(core)
    with pytest.raises(ValueError):
        core.settle([_out(job, "explode")], T0)
    assert core.store().items[("t", job.record.job_id)].token == job.token


def test_extend_pushes_the_expiry(core: Core) -> None:
    job = _take(core)
    assert core.extend([("t", job.record.job_id, job.token)], T0 + 10 * US) == [True]
    s = core.store()
    new_expiry = T0 + 10 * US + ITEM_LEASE
    assert s.items[("t", job.record.job_id)].at == new_expiry
    assert s.leased == [("t", new_expiry, job.record.job_id)]
    check_invariants(s, T0 + 10 * US)
    # the old expiry passes: the job stays with its worker
    core.enqueue("t", T0 + ITEM_LEASE)
    taken = core.visit("t", T0 + ITEM_LEASE, count=10)
    assert job.record.job_id not in [j.record.job_id for j in taken]
    # the new one passes without an extension: the job comes back
    assert core.db.transact(still_leased, core.layout, "t", job.record.job_id, job.token)
    taken = core.visit("t", new_expiry, count=10)
    assert job.record.job_id in [j.record.job_id for j in taken]
    assert core.extend([("t", job.record.job_id, job.token)], new_expiry) == [False]


def test_extend_never_shortens(db: Database) -> None:
    core = Core(db, Layout("short"))
    job = _take(core)
    before = core.dump()
    assert core.extend([("t", job.record.job_id, job.token)], T0) == [True]
    assert core.dump() == before


def test_extend_with_a_stale_token_changes_nothing(core: Core) -> None:
    job = _take(core)
    other = _take(core, now=T0 + 1)
    before = core.dump()
    result = core.extend(
        [("t", job.record.job_id, "forged"), ("t", other.record.job_id, other.token),
         ("t", "missing", job.token)],
        T0 + 5 * US,
    )
    assert result == [False, True, False]
    after = core.dump()
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # only the good lease's record and leased entry moved
    assert all(other.record.job_id.encode() in k for k in changed)
    assert core.store().items[("t", job.record.job_id)].at == job.record.at


def test_lease_loss_names_why_a_lease_is_gone(core: Core) -> None:
    def why(job: LeasedJob) -> LeaseLoss:
        return core.db.transact(
            lambda tr: lease_loss(tr, core.layout, "t", job.record.job_id, job.token))

    held = _take(core)
    assert why(held) == LeaseLoss.HELD
    assert core.cancel("t", held.record.job_id)
    assert why(held) == LeaseLoss.CANCELLED
    dead = _take(core)
    assert core.settle([_out(dead, "discard", reason="no")], T0) == [True]
    assert why(dead) == LeaseLoss.DEAD
    taken = _take(core, max_retries=5)
    [again] = core.visit("t", taken.record.at)  # expired, leased again by someone else
    assert again.record.job_id == taken.record.job_id and why(taken) == LeaseLoss.TAKEN
    key = core.layout.zone("t").item(again.record.job_id)
    core.db.transact(lambda tr: tr.set(key, b"\xff"))
    assert why(again) == LeaseLoss.UNREADABLE
