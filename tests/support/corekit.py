"""A small harness over the core transactions, shared by the core unit tests, the race tests
and the state machine: it runs each core function in its own transaction with an explicit
``now``, reads the whole key space of a queue back as plain Python data (``Store``), and checks
the invariants of DESIGN.md §4 on that data (``check_invariants``).

Nothing here mocks storage: every call goes through a real ``Database``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quick_queue.core import admin
from quick_queue.core.dequeue import KEEP_PLACE, ZoneNotDue, dequeue
from quick_queue.core.enqueue import NewJob, enqueue
from quick_queue.core.leases import Lease
from quick_queue.core.pointers import ASAP, EMPTY, decode_promise, lease_zone, scan_due
from quick_queue.core.records import EXTENDED, extended_expiry
from quick_queue.core.settle import extend_leases, settle_many
from quick_queue.keys import Layout, read_counter, unpack
from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import KVError, is_retryable
from quick_queue.models import DeadRecord, JobRecord, LeasedJob, PointerRecord
from quick_queue.outcomes import Outcome, OutcomeKind

US = 1_000_000
T0 = 1_800_000_000 * US  # the ManualClock's default start, in microseconds
ZONE_LEASE = 1 * US
ITEM_LEASE = 30 * US
MIN_INACTIVE = 30 * US
PROMOTE_MAX = 100


class Core:
    """The core transactions of one queue (``layout``) on ``db``, one transaction each."""

    def __init__(
        self,
        db: Database,
        layout: Layout,
        *,
        slack: int = 0,
        max_snoozes: int = 3,
        zone_lease: int = ZONE_LEASE,
        item_lease: int = ITEM_LEASE,
        min_inactive: int = MIN_INACTIVE,
        promote_max: int = PROMOTE_MAX,
    ) -> None:
        self.db = db
        self.layout = layout
        self.slack = slack
        self.max_snoozes = max_snoozes
        self.zone_lease = zone_lease
        self.item_lease = item_lease
        self.min_inactive = min_inactive
        self.promote_max = promote_max
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)

    # -- ids and tokens ------------------------------------------------------------------------
    def new_token(self) -> str:
        return f"tk{next(self._tokens):06d}"

    def new_id(self) -> str:
        return f"j{next(self._ids):06d}"

    def job(
        self,
        tenant: str,
        due: int,
        *,
        job_id: str | None = None,
        topic: str = "topic",
        payload: Any = None,
        priority: int = 100,
        max_retries: int | None = 3,
        key: str | None = None,
    ) -> NewJob:
        if job_id is None:
            job_id = f"k:{key}" if key is not None else self.new_id()
        return NewJob(tenant, job_id, topic, payload, priority, max_retries, due, key)

    # -- the transactions ----------------------------------------------------------------------
    def enqueue(self, tenant: str, now: int, *, delay: int = 0, **kw: Any) -> str:
        new = self.job(tenant, now + delay, **kw)
        return self.db.transact(enqueue, self.layout, new, now, self.slack)

    def enqueue_jobs(self, jobs: list[NewJob], now: int) -> list[str]:
        def write(tr: Transaction) -> list[str]:
            return [enqueue(tr, self.layout, j, now, self.slack) for j in jobs]

        return self.db.transact(write)

    def scan(self, now: int, peek_max: int = 1000) -> tuple[list[tuple[int, str]], int | None]:
        return self.db.transact(scan_due, self.layout, now, peek_max)

    def lease(self, tenant: str, now: int, token: str | None = None) -> str | None:
        """One try at the zone lease (no retry loop, as the runtime does); its token or None."""
        token = token or self.new_token()
        tr = self.db.create_transaction()
        try:
            if not lease_zone(tr, self.layout, tenant, token, now, self.zone_lease):
                return None
            tr.commit()
        except KVError as error:
            if is_retryable(error):  # lost the race (1020), or an injected fault
                return None
            raise
        return token

    def dequeue_fn(self, count: int) -> Callable[..., list[LeasedJob]]:
        """``dequeue`` as ``fn(tr, tenant, zone_token, now)``; zone_token None takes the zone in
        the same transaction (the runtime's one-step visit)."""

        def run(tr: Transaction, tenant: str, token: str | None, now: int) -> list[LeasedJob]:
            return dequeue(
                tr, self.layout, tenant, token, now, count=count, item_lease=self.item_lease,
                promote_max=self.promote_max, min_inactive=self.min_inactive,
                new_token=self.new_token,
            )

        return run

    def dequeue(
        self, tenant: str, token: str | None, now: int, count: int = 10
    ) -> list[LeasedJob]:
        return self.db.transact(self.dequeue_fn(count), tenant, token, now)

    def take(self, tenant: str, now: int, count: int = 10) -> list[LeasedJob] | None:
        """The runtime's one-step visit: take the zone and its jobs in one transaction, tried
        once. None when the zone is not due (ZoneNotDue) or the commit failed (a lost race)."""
        tr = self.db.create_transaction()
        try:
            jobs = self.dequeue_fn(count)(tr, tenant, None, now)
            tr.commit()
        except ZoneNotDue:
            return None
        except KVError as error:
            if is_retryable(error):
                return None
            raise
        return jobs

    def visit(self, tenant: str, now: int, count: int = 10) -> list[LeasedJob]:
        """lease_zone then dequeue, as the runtime's ``_visit`` does; [] if the lease fails."""
        token = self.lease(tenant, now)
        if token is None:
            return []
        return self.dequeue(tenant, token, now, count)

    def settle(self, outcomes: list[Outcome], now: int) -> list[bool]:
        return self.db.transact(
            settle_many, self.layout, outcomes, now, self.slack, self.max_snoozes
        )

    def done(self, job: LeasedJob, now: int) -> bool:
        done = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE)
        return self.settle([done], now)[0]

    def extend(self, leases: Sequence[Lease], now: int) -> list[bool]:
        return self.db.transact(extend_leases, self.layout, leases, now, self.item_lease)

    def cancel(self, tenant: str, job_id: str) -> bool:
        return self.db.transact(admin.cancel, self.layout, tenant, job_id)

    def retry_dead(self, tenant: str, job_id: str, now: int) -> bool:
        return self.db.transact(admin.retry_dead, self.layout, tenant, job_id, now, self.slack)

    # -- reading the store back ----------------------------------------------------------------
    def dump(self, *, stats: bool = True) -> dict[bytes, bytes]:
        """Every key of this queue. ``[root, root + 0xFF)`` holds exactly this queue's keys even
        when another queue's name extends this one's (``"a"`` and ``"a\\x00b"``)."""
        root = self.layout.root
        rows = self.db.transact(lambda tr: tr.get_range(root, root + b"\xff"))
        out = dict(rows)
        if not stats:
            prefix = self.layout.stats_prefix
            out = {k: v for k, v in out.items() if not k.startswith(prefix)}
        return out

    def store(self) -> Store:
        return Store.parse(self.layout, self.dump())

    def record(self, tenant: str, job_id: str) -> JobRecord | None:
        return self.store().items.get((tenant, job_id))

    def stat(self, topic: str, name: str) -> int:
        key = self.layout.stat(topic, name)
        return read_counter(self.db.transact(lambda tr: tr.get(key)))


@dataclass
class Store:
    """A queue's key space, decoded."""

    items: dict[tuple[str, str], JobRecord] = field(default_factory=dict)
    ready: list[tuple[str, int, int, str]] = field(default_factory=list)  # tenant, prio, seq, id
    scheduled: list[tuple[str, int, str]] = field(default_factory=list)  # tenant, at, id
    leased: list[tuple[str, int, str]] = field(default_factory=list)  # tenant, expiry, id
    leased_tokens: dict[tuple[str, str], bytes] = field(default_factory=dict)  # entry values
    # extension records of extended leases (core.records): merged into ``items`` by ``parse``
    extensions: dict[tuple[str, str], bytes] = field(default_factory=dict)
    dead: dict[tuple[str, str], DeadRecord] = field(default_factory=dict)
    markers: dict[str, int] = field(default_factory=dict)  # tenant -> promise
    pointers: dict[str, PointerRecord] = field(default_factory=dict)
    due: list[tuple[int, str]] = field(default_factory=list)  # vesting, tenant
    stats: dict[tuple[str, str], int] = field(default_factory=dict)
    history: dict[tuple[str, str], bytes] = field(default_factory=dict)  # kept results
    history_expiry: list[tuple[int, str, str]] = field(default_factory=list)  # at, tenant, id

    @classmethod
    def parse(cls, layout: Layout, dump: dict[bytes, bytes]) -> Store:
        s = cls()
        root = len(layout.root)
        for key, value in sorted(dump.items()):
            parts = unpack(key, root)
            space, rest = parts[0], parts[1:]
            if space == "z":
                tenant, kind = str(rest[0]), rest[1]
                if kind == "i":
                    job_id = str(rest[2])
                    s.items[(tenant, job_id)] = JobRecord.decode(job_id, value)
                elif kind == "r":
                    s.ready.append((tenant, int(rest[2]), int(rest[3]), str(rest[4])))
                elif kind == "s":
                    s.scheduled.append((tenant, int(rest[2]), str(rest[3])))
                elif kind == "l":
                    s.leased.append((tenant, int(rest[2]), str(rest[3])))
                    s.leased_tokens[(tenant, str(rest[3]))] = value
                elif kind == "x":
                    s.extensions[(tenant, str(rest[2]))] = value
                else:
                    raise AssertionError(f"unknown zone key {parts!r}")
                assert value == b"" or kind in "ilx" or (kind, value) == ("s", KEEP_PLACE), (
                    f"index entry with a value: {parts!r}")
            elif space == "d":
                tenant, job_id = str(rest[0]), str(rest[1])
                s.dead[(tenant, job_id)] = DeadRecord.decode(job_id, value)
            elif space == "pm":
                s.markers[str(rest[0])] = decode_promise(value)
            elif space == "pr":
                s.pointers[str(rest[0])] = PointerRecord.decode(value)
            elif space == "pd":
                s.due.append((int(rest[0]), str(rest[1])))
            elif space == "st":
                s.stats[(str(rest[0]), str(rest[1]))] = read_counter(value)
            elif space == "h":
                s.history[(str(rest[0]), str(rest[1]))] = value
            elif space == "hx":
                assert value == b"", f"history expiry entry with a value: {parts!r}"
                s.history_expiry.append((int(rest[0]), str(rest[1]), str(rest[2])))
            else:
                raise AssertionError(f"key outside the layout: {parts!r}")
        s._merge_extensions()
        return s

    def _merge_extensions(self) -> None:
        """An extended lease's current expiry is its extension record's (``core.records``):
        the records in ``items`` show it, so every check compares against the real expiry.
        An extension record must belong to a live lease with its token."""
        for ident, raw in self.extensions.items():
            record = self.items.get(ident)
            assert record is not None and record.state == "l", (
                f"{ident}: extension record without a leased job")
            expiry = extended_expiry(raw, record.token)
            assert expiry is not None, f"{ident}: extension record of another lease: {raw!r}"
            record.at = expiry

    def tenants_with_jobs(self) -> set[str]:
        return {tenant for tenant, _ in self.items}

    def jobs_of(self, tenant: str) -> list[JobRecord]:
        return [r for (t, _), r in self.items.items() if t == tenant]


def check_invariants(store: Store, now: int, slack: int = 0) -> None:
    """DESIGN.md §4 on a decoded store at time ``now``. Raises AssertionError naming the first
    violation.

    * every live record has exactly one index entry, matching its state, priority and time, and
      no index entry lacks its record;
    * no job is both live and dead;
    * pointers are whole: marker iff record, exactly one due entry per record, at its vesting;
    * no orphans: every zone with a live job has a pointer;
    * a marker promising EMPTY belongs to a zone with no live job;
    * the pointer is due no later than any job of its zone needs it: ``vesting <= max(now, t) +
      slack`` where ``t`` is a ready job's due time, a scheduled job's time or a lease's
      expiry (a producer leaves a pointer alone when it would move by at most the slack). The one
      exception is a leased pointer (``pointers.py``): its vesting is its lease expiry, and the
      holder re-vests it on release (a holder that died delays the zone by one zone lease).
    """
    _check_entries(store)
    _check_pointers(store)
    _check_vesting(store, now, slack)


def _check_entries(store: Store) -> None:
    """Each live record has exactly its one index entry; no entry lacks its record."""
    entries: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for tenant, prio, seq, job_id in store.ready:
        entries.setdefault((tenant, job_id), []).append(("r", prio, seq))
    for tenant, at, job_id in store.scheduled:
        entries.setdefault((tenant, job_id), []).append(("s", -1, at))
    for tenant, at, job_id in store.leased:
        entries.setdefault((tenant, job_id), []).append(("l", -1, at))
    for ident, found in entries.items():
        assert ident in store.items, f"index entries {found} without a record for {ident}"
    for ident, record in store.items.items():
        found = entries.get(ident, [])
        assert len(found) == 1, f"{ident} has index entries {found}, want exactly one"
        state, prio, at = found[0]
        assert state == record.state, f"{ident}: entry in {state!r}, record says {record.state!r}"
        assert at == record.at, f"{ident}: entry time {at}, record time {record.at}"
        if state == "r":
            assert prio == record.priority, f"{ident}: ready entry priority {prio}"
            assert record.seq == record.at, f"{ident}: ready record seq {record.seq} != at"
        if state == "l":
            assert record.token is not None, f"{ident}: leased without a token"
            # the leased entry carries the token (completion's fast path trusts it), marked
            # EXTENDED exactly when an extension moved it (and wrote the extension record)
            mark = EXTENDED if ident in store.extensions else b""
            assert store.leased_tokens[ident] == record.token.encode() + mark, (
                f"{ident}: leased entry holds {store.leased_tokens[ident]!r}, "
                f"record token {record.token!r}"
            )
        else:
            assert record.token is None, f"{ident}: {state!r} record keeps token {record.token}"
        assert ident not in store.dead, f"{ident} is both live and dead"


def _check_pointers(store: Store) -> None:
    """Pointers are whole: marker iff record, exactly one due entry per record, at its vesting."""
    due_by_tenant: dict[str, list[int]] = {}
    for vesting, tenant in store.due:
        due_by_tenant.setdefault(tenant, []).append(vesting)
    assert set(store.markers) == set(store.pointers), (
        f"markers {sorted(store.markers)} != pointer records {sorted(store.pointers)}"
    )
    assert set(due_by_tenant) == set(store.pointers), (
        f"due entries {sorted(due_by_tenant)} != pointer records {sorted(store.pointers)}"
    )
    for tenant, pointer in store.pointers.items():
        assert due_by_tenant[tenant] == [pointer.vesting], (
            f"zone {tenant!r}: due entries {due_by_tenant[tenant]}, record vests {pointer.vesting}"
        )
        if pointer.token is not None:
            assert pointer.vesting == pointer.lease_expiry, (
                f"zone {tenant!r}: leased pointer vests {pointer.vesting}, "
                f"lease expires {pointer.lease_expiry}"
            )


def _check_vesting(store: Store, now: int, slack: int) -> None:
    """No orphans, and every zone's pointer is due no later than its jobs need it."""
    for tenant in store.tenants_with_jobs():
        assert tenant in store.pointers, f"orphan: zone {tenant!r} has jobs and no pointer"
        promise = store.markers[tenant]
        assert promise != EMPTY, f"zone {tenant!r} has jobs but its marker promises EMPTY"
        pointer = store.pointers[tenant]
        if pointer.token is not None:
            continue  # the zone-lease case (see the docstring)
        for record in store.jobs_of(tenant):
            # by the job's time (plus the slack enqueue allows itself); a job already due
            # (ready, or a due scheduled job or lease not yet promoted: promotion is bounded
            # per visit) may also find the zone due since an earlier "now"
            limit = max(now, record.at) + slack
            assert pointer.vesting <= limit, (
                f"zone {tenant!r} vests at {pointer.vesting} (promise {promise}) but its "
                f"{record.state!r} job {record.job_id} needs a visit by {limit} (now {now})"
            )
        if promise == ASAP:
            assert pointer.vesting <= now, f"zone {tenant!r} promises ASAP, vests later"
        else:
            assert pointer.vesting <= promise, (
                f"zone {tenant!r} vests at {pointer.vesting}, later than its promise {promise}"
            )
