"""A Hypothesis state machine driving the core transactions against a simple model.

Rules: enqueue (one job or a batch; random tenant, priority, delay, retry budget, sometimes a
key), scan + lease_zone + dequeue, a consumer that leases a zone and dies (or comes back late),
settle with every outcome kind (single and batched, current, stale and forged tokens, with and
without the completion fast path, keeping results or not), extend, cancel, retry_dead, and
moving ``now``.

After every step the store must equal the model (every live record's state, times, attempt,
snoozes and token; the dead letters and their kinds) and the invariants of DESIGN.md §4 must
hold (``corekit.check_invariants``: index entries match records, no orphans, pointers whole and
due in time), and every unexpired kept result is in the history with how its job ended (and its
expiry index entry). Each rule checks its own promises too: fenced operations change nothing, a
job is never leased twice while a lease on it is unexpired, tokens are never reused, a zone with
due work and no live zone lease can always be leased. At the end the queue is drained (every job
ends completed, dead or cancelled) and every pointer is collected.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import quick_queue.kv as kv
from quick_queue.core.dequeue import ZoneLeaseLost
from quick_queue.core.history import HistoryEntry
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.kv.faults import FaultyDatabase
from quick_queue.models import LeasedJob
from quick_queue.outcomes import Kept, Outcome, OutcomeKind
from tests.support.corekit import (
    ITEM_LEASE,
    MIN_INACTIVE,
    T0,
    US,
    ZONE_LEASE,
    Core,
    Store,
    check_invariants,
)

TENANTS = ["a", "b", "a\x00b", "ab"]
SLACK = 2_000  # the default pointer_slack (2 ms); some delays below fall inside it
MAX_SNOOZES = 2
DELAYS = [0, 0, 0, -US, 1_000, 500_000, US, 5 * US, ITEM_LEASE, 90 * US]
STEPS = [1, 1_000, 500_000, ZONE_LEASE, 5 * US, ITEM_LEASE, MIN_INACTIVE + US, 100 * US]
KINDS = ["done", "done", "retry", "snooze", "discard", "dead", "release"]
KEEP = 5 * US  # kept results expire within a few steps, so pruning runs

Ident = tuple[str, str]


@dataclass
class MJob:
    """The model of a live job."""

    priority: int
    max_retries: int | None  # None: none fixed; the settling worker's handler decides
    state: str
    at: int
    seq: int
    attempt: int = 0
    snoozes: int = 0
    token: str | None = None
    since: int = 0  # when the job was put where it is (enqueue, settle, promotion)

    def needs_visit_by(self) -> int:
        """When its zone must be due at the latest (a producer may leave the pointer up to
        the slack late)."""
        if self.state == "l":
            return self.at + SLACK
        return max(self.at, self.since) + SLACK


@dataclass
class MDead:
    kind: str
    attempt: int
    priority: int
    max_retries: int | None


@dataclass
class Held:
    """A job lease some (possibly dead or late) worker holds."""

    tenant: str
    job_id: str
    token: str
    expiry: int


class CoreMachine(RuleBasedStateMachine):
    db: Database  # set by the test function
    fault_rates: dict[str, float] | None = None  # set by the test function
    injected: collections.Counter[str] = collections.Counter()
    names = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        db = self.db
        self.faulty: FaultyDatabase | None = None
        if self.fault_rates:
            # one wrapper per example, always seeded alike: the faults of an example replay
            db = self.faulty = FaultyDatabase(db, seed=7, **self.fault_rates)
        self.core = Core(
            db, Layout(f"sm{next(self.names)}"), slack=SLACK, max_snoozes=MAX_SNOOZES,
            promote_max=1000,
        )
        self.now = T0
        self.live: dict[Ident, MJob] = {}
        self.dead: dict[Ident, MDead] = {}
        self.status: dict[Ident, str] = {}  # live | done | dead | cancelled
        self.held: list[Held] = []
        self.tokens: set[str] = set()
        self.zone_held: list[tuple[str, str, int]] = []  # zone leases of consumers that died
        self.kept: dict[Ident, tuple[str, int]] = {}  # kept result: (final state, expires)

    # -- the model ------------------------------------------------------------------------------
    def _place(self, job: MJob, due: int) -> None:
        job.token = None
        job.since = self.now
        job.at = job.seq = due
        job.state = "r" if due <= self.now else "s"

    @staticmethod
    def _limit(job: MJob, handler: int | None) -> int:
        """The retries a failed attempt is judged by: the producer's, else the handler's,
        else the default (3)."""
        if job.max_retries is not None:
            return job.max_retries
        return handler if handler is not None else 3

    def _bury(self, ident: Ident, kind: str) -> None:
        job = self.live.pop(ident)
        self.dead[ident] = MDead(kind, job.attempt, job.priority, job.max_retries)
        self.status[ident] = "dead"

    def _model_dequeue(self, tenant: str, count: int) -> list[str]:
        now = self.now
        zone = {i: j for i, j in self.live.items() if i[0] == tenant}
        for ident, job in zone.items():
            if job.state == "s" and job.at <= now:
                job.state, job.seq, job.since = "r", job.at, now
            elif job.state == "l" and job.at <= now:
                job.token, job.since = None, now
                if job.attempt > self._limit(job, None):
                    self._bury(ident, "lease_expired")
                else:
                    job.state, job.at = "r", job.seq
        ready = sorted(
            (i for i, j in self.live.items() if i[0] == tenant and j.state == "r"),
            key=lambda i: (self.live[i].priority, self.live[i].seq, i[1]),
        )
        return [job_id for _, job_id in ready[:count]]

    def _must_be_due(self, tenant: str) -> bool:
        """The zone has work due now and no consumer holds an unexpired zone lease on it."""
        if any(t == tenant and exp > self.now for t, _, exp in self.zone_held):
            return False
        return any(i[0] == tenant and j.needs_visit_by() <= self.now
                   for i, j in self.live.items())

    def _valid(self, held: Held) -> bool:
        job = self.live.get((held.tenant, held.job_id))
        return job is not None and job.state == "l" and job.token == held.token

    def _pick_tenant(self, pick: int) -> str:
        due = [t for _, t in self.core.scan(self.now)[0]]
        choices = due or TENANTS
        return choices[pick % len(choices)]

    def _accept(self, tenant: str, expected: list[str], taken: list[LeasedJob]) -> None:
        assert [j.record.job_id for j in taken] == expected, (
            f"dequeue of {tenant!r} at {self.now} took {[j.record.job_id for j in taken]}, "
            f"the model says {expected}"
        )
        for leased in taken:
            ident = (tenant, leased.record.job_id)
            # no double lease: any earlier lease on this job has run out
            for h in self.held:
                if (h.tenant, h.job_id) == ident and h.expiry > self.now:
                    assert not self._valid(h), f"{ident} leased again while {h} is unexpired"
            assert leased.token not in self.tokens, f"lease token {leased.token} reused"
            self.tokens.add(leased.token)
            job = self.live[ident]
            job.state, job.at, job.token = "l", self.now + ITEM_LEASE, leased.token
            job.attempt += 1
            self.held.append(Held(tenant, ident[1], leased.token, job.at))
        del self.held[:-40]  # keep the stale ones around for a while, not forever

    # -- rules: producing -------------------------------------------------------------------
    def _enqueue_model(self, tenant: str, job_id: str, keyed: bool, priority: int,
                       max_retries: int | None, due: int) -> None:
        ident = (tenant, job_id)
        if keyed and (ident in self.live or ident in self.dead):
            return  # idempotent: the keyed job is still there
        job = MJob(priority, max_retries, "r", due, due)
        self._place(job, due)
        self.live[ident] = job
        self.status[ident] = "live"

    @rule(
        tenant=st.sampled_from(TENANTS),
        priority=st.sampled_from([0, 5, 100]),
        delay=st.sampled_from(DELAYS),
        max_retries=st.sampled_from([0, 1, 2, None]),
        key=st.sampled_from([None, None, None, "k1", "k2"]),
    )
    def enqueue(
        self, tenant: str, priority: int, delay: int, max_retries: int | None, key: str | None
    ) -> None:
        job_id = self.core.enqueue(
            tenant, self.now, delay=delay, priority=priority, max_retries=max_retries, key=key
        )
        self._enqueue_model(tenant, job_id, key is not None, priority, max_retries,
                            self.now + delay)

    @rule(batch=st.lists(
        st.tuples(st.sampled_from(TENANTS), st.sampled_from([0, 100]), st.sampled_from(DELAYS)),
        min_size=1, max_size=5,
    ))
    def enqueue_batch(self, batch: list[tuple[str, int, int]]) -> None:
        jobs = [self.core.job(t, self.now + d, priority=p, max_retries=1) for t, p, d in batch]
        self.core.enqueue_jobs(jobs, self.now)
        for job in jobs:
            self._enqueue_model(job.tenant, job.job_id, False, job.priority, 1, job.due)

    # -- rules: consuming -------------------------------------------------------------------
    @rule(pick=st.integers(0, 7), count=st.sampled_from([0, 1, 2, 5, 100]))
    def visit(self, pick: int, count: int) -> None:
        self._visit(self._pick_tenant(pick), count)

    @rule(pick=st.integers(0, 7), count=st.sampled_from([0, 1, 5, 100]))
    def visit_in_one_step(self, pick: int, count: int) -> None:
        """The runtime's visit: the zone taken inside the dequeue transaction, tried once."""
        tenant = self._pick_tenant(pick)
        must = self._must_be_due(tenant)
        before = self.core.dump()
        taken = self.core.take(tenant, self.now, count)
        if taken is None:
            assert not must or self.faulty, f"zone {tenant!r} has due work but no visit"
            assert self.core.dump() == before
            return
        self._accept(tenant, self._model_dequeue(tenant, count), taken)

    @rule(count=st.sampled_from([1, 100]))
    def visit_every_due_zone(self, count: int) -> None:
        """One pass of a scanner that takes every zone it sees due."""
        for _vesting, tenant in self.core.scan(self.now)[0]:
            self._visit(tenant, count)

    def _visit(self, tenant: str, count: int) -> None:
        must = self._must_be_due(tenant)
        token = self.core.lease(tenant, self.now)
        if token is None:
            assert not must or self.faulty, f"zone {tenant!r} has due work but no lease"
            return
        assert token not in self.tokens
        self.tokens.add(token)
        expected = self._model_dequeue(tenant, count)
        taken = self.core.dequeue(tenant, token, self.now, count)
        self._accept(tenant, expected, taken)

    @rule(pick=st.integers(0, 7))
    def lease_and_die(self, pick: int) -> None:
        """A consumer takes a zone lease and does not come back (for now)."""
        tenant = self._pick_tenant(pick)
        must = self._must_be_due(tenant)
        token = self.core.lease(tenant, self.now)
        if token is None:
            assert not must or self.faulty, f"zone {tenant!r} has due work but no lease"
            return
        self.tokens.add(token)
        self.zone_held.append((tenant, token, self.now + ZONE_LEASE))

    @precondition(lambda self: self.zone_held)
    @rule(pick=st.integers(0, 7), count=st.sampled_from([1, 5]))
    def late_dequeue(self, pick: int, count: int) -> None:
        """A consumer that leased a zone earlier dequeues now, perhaps after losing it."""
        tenant, token, _ = self.zone_held.pop(pick % len(self.zone_held))
        pointer = self.core.store().pointers.get(tenant)
        if pointer is None or pointer.token != token:  # collected, released, or taken over
            before = self.core.dump()
            with pytest.raises(ZoneLeaseLost):
                self.core.dequeue(tenant, token, self.now, count)
            assert self.core.dump() == before
            return
        expected = self._model_dequeue(tenant, count)
        taken = self.core.dequeue(tenant, token, self.now, count)
        self._accept(tenant, expected, taken)

    # -- rules: settling --------------------------------------------------------------------
    def _outcome(self, held: Held, kind: str, delay: int, fast: bool, forged: bool,
                 handler: int | None = None, keep: bool = False) -> Outcome:
        token = "forged" if forged else held.token
        kept = Kept(KEEP, self.now, 0.0, b'"value"', None, "topic", 1, 3, 100, T0, None,
                    None) if keep else None
        return Outcome(
            held.tenant, held.job_id, token, OutcomeKind(kind), at=self.now + delay,
            reason=f"{kind}!",
            dead_kind="bad_payload" if kind == "dead" else "", topic="topic",
            lease_at=held.expiry if fast else 0, max_retries=handler, kept=kept,
        )

    def _keep_model(self, outcome: Outcome) -> None:
        """An applied outcome that kept its result and ended the job: its history entry."""
        ident = (outcome.tenant, outcome.job_id)
        if outcome.kept is None or ident in self.live:
            return
        if self.status[ident] == "done":
            state = "completed"
        else:
            state = "discarded" if self.dead[ident].kind == "discarded" else "dead"
        self.kept[ident] = (state, self.now + KEEP)

    def _settle_model(self, outcome: Outcome) -> bool:
        ident = (outcome.tenant, outcome.job_id)
        job = self.live.get(ident)
        if job is None or job.state != "l" or job.token != outcome.token:
            return False
        kind = outcome.kind
        if kind == "done":
            del self.live[ident]
            self.status[ident] = "done"
        elif kind == "discard":
            self._bury(ident, "discarded")
        elif kind == "dead":
            self._bury(ident, outcome.dead_kind)
        elif kind == "retry":
            if job.attempt > self._limit(job, outcome.max_retries):
                self._bury(ident, "failed")
            else:
                self._place(job, outcome.at)
        elif kind == "snooze":
            job.attempt -= 1
            job.snoozes += 1
            if job.snoozes > MAX_SNOOZES:
                self._bury(ident, "snoozed_out")
            else:
                self._place(job, outcome.at)
        elif kind == "release":
            job.attempt -= 1
            job.token, job.state, job.at, job.since = None, "r", job.seq, self.now
        return True

    def _choose(self, picks: list[int], current: bool) -> list[Held]:
        """Leases to settle or extend: current ones (if any), or any held, stale ones too."""
        pool = [h for h in self.held if self._valid(h)] if current else []
        pool = pool or self.held
        return [pool[p % len(pool)] for p in picks]

    @precondition(lambda self: self.held)
    @rule(
        picks=st.lists(st.integers(0, 63), min_size=1, max_size=3, unique=True),
        kinds=st.lists(st.sampled_from(KINDS), min_size=3, max_size=3),
        delay=st.sampled_from([0, -1, 1_000, US, 20 * US]),
        fast=st.booleans(),
        current=st.sampled_from([True, True, True, False]),
        forged=st.sampled_from([False, False, False, False, True]),
        handler=st.sampled_from([None, 0, 2]),
        keep=st.booleans(),
    )
    def settle(
        self, picks: list[int], kinds: list[str], delay: int, fast: bool, current: bool,
        forged: bool, handler: int | None, keep: bool,
    ) -> None:
        outcomes = [
            self._outcome(held, kind, delay, fast, forged, handler, keep)
            for held, kind in zip(self._choose(picks, current), kinds, strict=False)
        ]
        before = self.core.dump(stats=False)
        stale_before = self.core.stat("*", "stale")
        expected = []
        for outcome in outcomes:
            expected.append(self._settle_model(outcome))
            if expected[-1]:
                self._keep_model(outcome)
        assert self.core.settle(outcomes, self.now) == expected
        assert self.core.stat("*", "stale") == stale_before + expected.count(False)
        if not any(expected):  # fencing: stale outcomes change nothing
            assert self.core.dump(stats=False) == before

    @precondition(lambda self: self.held)
    @rule(picks=st.lists(st.integers(0, 63), min_size=1, max_size=4),
          current=st.sampled_from([True, True, False]),
          forged=st.sampled_from([False, False, False, True]))
    def extend(self, picks: list[int], current: bool, forged: bool) -> None:
        chosen = self._choose(picks, current)
        leases = [(h.tenant, h.job_id, "forged" if forged else h.token) for h in chosen]
        before = self.core.dump()
        expected = []
        for h, (_, _, token) in zip(chosen, leases, strict=True):
            ok = self._valid(replace(h, token=token))
            expected.append(ok)
            if ok:
                job = self.live[(h.tenant, h.job_id)]
                job.at = max(job.at, self.now + ITEM_LEASE)
                for other in self.held:
                    if other.token == h.token:
                        other.expiry = job.at
        assert self.core.extend(leases, self.now) == expected
        if not any(expected):
            assert self.core.dump() == before

    # -- rules: by id -------------------------------------------------------------------------
    @precondition(lambda self: self.status)
    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        ident = sorted(self.status)[pick % len(self.status)]
        expected = ident in self.live
        assert self.core.cancel(*ident) == expected
        if expected:
            del self.live[ident]
            self.status[ident] = "cancelled"

    @precondition(lambda self: self.dead)
    @rule(pick=st.integers(0, 1000))
    def retry_dead(self, pick: int) -> None:
        ident = sorted(self.dead)[pick % len(self.dead)]
        assert self.core.retry_dead(*ident, self.now)
        dead = self.dead.pop(ident)
        self.live[ident] = MJob(dead.priority, dead.max_retries, "r", self.now, self.now,
                                since=self.now)
        self.status[ident] = "live"

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: int) -> None:
        self.now += step

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        store = self.core.store()
        self.check(store)

    def check(self, store: Store) -> None:
        assert set(store.items) == set(self.live), (
            f"live jobs differ: store-only {set(store.items) - set(self.live)}, "
            f"model-only {set(self.live) - set(store.items)}"
        )
        for ident, job in self.live.items():
            r = store.items[ident]
            got = (r.state, r.at, r.seq, r.attempt, r.snoozes, r.token, r.priority,
                   r.max_retries if r.retries_set else None)
            want = (job.state, job.at, job.seq, job.attempt, job.snoozes, job.token,
                    job.priority, job.max_retries)
            assert got == want, f"{ident}: store {got}, model {want}"
        assert {i: (d.kind, d.attempt) for i, d in store.dead.items()} == {
            i: (d.kind, d.attempt) for i, d in self.dead.items()
        }
        # no lost jobs: every job ever enqueued is in exactly one place
        for ident, status in self.status.items():
            where = [name for name, present in (
                ("live", ident in store.items), ("dead", ident in store.dead)) if present]
            if status in ("live", "dead"):
                assert where == [status], f"{ident} is {status} but found in {where}"
            else:
                assert where == [], f"{ident} was {status} but is still {where}"
        check_invariants(store, self.now, SLACK)
        self._check_history(store)

    def _check_history(self, store: Store) -> None:
        """Unexpired kept results are there, as the model says; nothing else is (an expired
        one may linger until a later settle prunes it); each has its expiry index entry."""
        entries = {
            ident: HistoryEntry.decode(ident[0], ident[1], raw)
            for ident, raw in store.history.items()
        }
        index = set(store.history_expiry)
        for ident, entry in entries.items():
            assert entry is not None and ident in self.kept, f"{ident}: unexpected {entry}"
            assert (str(entry.state), entry.expires) == self.kept[ident], ident
            assert (entry.expires, *ident) in index, f"{ident}: no expiry index entry"
        for ident, (_, expires) in self.kept.items():
            assert expires <= self.now or ident in entries, f"{ident}: kept result missing"

    def teardown(self) -> None:
        if self.faulty is None:
            self.drain()
            return
        self.injected.update(self.faulty.injected)
        with self.faulty.paused():
            self.drain()

    def drain(self) -> None:
        """Far in the future every job can be run to completion, then every pointer is
        collected."""
        core = self.core
        self.now += 3600 * US
        for _ in range(10):
            if not core.store().items:
                break
            for _vesting, tenant in core.scan(self.now)[0]:
                token = core.lease(tenant, self.now)
                assert token is not None, f"zone {tenant!r} cannot be leased while draining"
                taken = core.dequeue(tenant, token, self.now, 1000)
                outcomes = [Outcome(j.tenant, j.record.job_id, j.token, OutcomeKind.DONE)
                            for j in taken]
                assert all(core.settle(outcomes, self.now))
            check_invariants(core.store(), self.now, SLACK)
            self.now += US
        store = core.store()
        assert store.items == {}, f"jobs left after draining: {sorted(store.items)}"
        for _ in range(5):
            self.now += ITEM_LEASE + MIN_INACTIVE
            for _vesting, tenant in core.scan(self.now)[0]:
                token = core.lease(tenant, self.now)
                assert token is not None
                assert core.dequeue(tenant, token, self.now, 10) == []
        store = core.store()
        assert store.pointers == {} and store.markers == {} and store.due == []
        # draining may dead-letter jobs whose last lease ran out; it never revives one
        assert set(self.dead) <= set(store.dead)


@pytest.fixture
def machine_db() -> Iterator[Database]:
    db = kv.open("memory://")
    try:
        yield db
    finally:
        db.close()


def _run(db: Database, examples: int, steps: int, **fault_rates: float) -> None:
    CoreMachine.db = db
    CoreMachine.fault_rates = fault_rates
    CoreMachine.injected.clear()
    run_state_machine_as_test(
        CoreMachine,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_core_state_machine(machine_db: Database) -> None:
    _run(machine_db, examples=100, steps=50)


def test_core_state_machine_under_faults(machine_db: Database) -> None:
    """Commits that fail (1020, 1007) and reads that age out are retried by the retry loop
    (a lost zone-lease attempt just moves on): the model and the invariants do not notice."""
    _run(machine_db, examples=40, steps=40, not_committed=0.15, too_old=0.05)
    injected = CoreMachine.injected
    assert injected["not_committed"] > 0 and injected["too_old"] > 0
    assert injected["read_too_old"] > 0


@pytest.mark.slow
def test_core_state_machine_long(machine_db: Database) -> None:
    _run(machine_db, examples=400, steps=80)
