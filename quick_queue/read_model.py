"""The read model: what ``JobQueue.stats()``, ``quick-queue inspect`` (and later a dashboard)
show of a queue, computed one way.

Everything here reads the store only (never live workers), in short snapshot transactions of
at most ``CHUNK`` keys each, so a view never holds up producers or consumers and never runs
into FoundationDB's 5 s transaction limit. The price: a view spanning several transactions is
not one consistent snapshot (a job may be counted in two states, or in none, while it moves).

The functions take a ``ReadContext``: anything with ``db``, ``layout`` and ``clock`` (a
``JobQueue`` or its queue context); nothing here imports the facade or the runtime.

Totals (``QueueStats``) are summed from the per-zone views (``ZoneView``) by one function,
``_totals``, which both ``queue_stats`` and ``overview`` call: a zone is *due* when it has a job
that could run now and is not running, i.e. a ready job, a scheduled job whose time has come,
or an expired lease (the next visit makes it ready); ``oldest_due_age`` is how long the
longest-waiting of those has waited.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from quick_queue.clock import Clock
from quick_queue.core import admin
from quick_queue.core.pointers import read_pointer
from quick_queue.core.records import extension_key, with_extension
from quick_queue.flow.summary import FlowSummary, read_flow
from quick_queue.keys import Layout, pack, read_counter, unpack
from quick_queue.kv.api import Database, Transaction, strinc
from quick_queue.models import JobInfo, JobRecord, QueueStats, to_datetime, to_us

CHUNK = 1000
#: seconds: "leases about to expire" means within this window (or already expired)
LEASE_WINDOW = 10.0


class ReadContext(Protocol):
    """What a view needs: the database, the queue's keys and a clock for "now"."""

    @property
    def db(self) -> Database: ...

    @property
    def layout(self) -> Layout: ...

    @property
    def clock(self) -> Clock: ...


@dataclass
class ZoneView:
    """One zone: depth per state and the times that matter.

    ``oldest_ready`` is when the longest-waiting ready job became due; ``expiring`` counts
    leases that end within the lease window (``expired`` those already past: their worker died
    or stalled, and the next visit to the zone makes them ready again)."""

    tenant: str
    ready: int = 0
    scheduled: int = 0
    leased: int = 0
    oldest_ready: datetime | None = None
    next_scheduled: datetime | None = None
    next_lease_expiry: datetime | None = None
    expiring: int = 0
    expired: int = 0
    pointer_due: datetime | None = None
    pointer_leased: bool = False

    @property
    def jobs(self) -> int:
        return self.ready + self.scheduled + self.leased

    def due_since(self, now: datetime) -> datetime | None:
        """Since when the zone has had a job due and not running: its oldest ready job, an
        overdue scheduled job, or an expired lease (those become ready at the next visit)."""
        times = [self.oldest_ready]
        if self.next_scheduled is not None and self.next_scheduled <= now:
            times.append(self.next_scheduled)
        if self.expired and self.next_lease_expiry is not None:
            times.append(self.next_lease_expiry)
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def depth_order(self) -> tuple[int, int, str]:
        """Sort key: deepest first (most ready, then most jobs), then by tenant."""
        return (-self.ready, -self.jobs, self.tenant)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "ready": self.ready, "scheduled": self.scheduled,
            "leased": self.leased, "oldest_ready_at": _iso(self.oldest_ready),
            "next_scheduled_at": _iso(self.next_scheduled),
            "next_lease_expiry_at": _iso(self.next_lease_expiry),
            "leases_expiring": self.expiring, "leases_expired": self.expired,
            "pointer_due_at": _iso(self.pointer_due), "pointer_leased": self.pointer_leased,
        }


@dataclass
class Overview:
    """Everything ``quick-queue inspect`` prints: ``stats`` (the ``QueueStats`` of
    ``JobQueue.stats()``), the deepest zones with jobs (at most ``zone_limit``: ``zones_with_jobs``
    says how many there are), and the leases about to expire (soonest first, at most a page)."""

    queue: str
    now: datetime
    stats: QueueStats
    zones: list[ZoneView]
    zones_with_jobs: int
    expiring: list[JobInfo]
    lease_window: float
    flow: FlowSummary = field(default_factory=FlowSummary)  # pauses and schedules

    def to_dict(self) -> dict[str, Any]:
        out = self.stats.to_dict()
        out.update(self.flow.to_dict())
        out.update({
            "queue": self.queue, "now": self.now.isoformat(),
            "lease_window_seconds": self.lease_window,
            "zones_with_jobs": self.zones_with_jobs,
            "zone_list": [z.to_dict() for z in self.zones],
            "expiring_leases": [j.to_dict() for j in self.expiring],
        })
        return out


@dataclass
class _Totals:
    """Running sums over zone views (``_totals``), so memory stays flat however many zones."""

    stats: QueueStats = field(default_factory=QueueStats)
    oldest_due: datetime | None = None
    with_jobs: int = 0

    def add(self, zone: ZoneView, now: datetime) -> None:
        self.stats.zones += 1
        self.stats.ready += zone.ready
        self.stats.scheduled += zone.scheduled
        self.stats.leased += zone.leased
        self.with_jobs += 1 if zone.jobs else 0
        due = zone.due_since(now)
        if due is not None:
            self.stats.due_zones += 1
            if self.oldest_due is None or due < self.oldest_due:
                self.oldest_due = due

    def finish(self, ctx: ReadContext, now: datetime) -> QueueStats:
        if self.oldest_due is not None:
            self.stats.oldest_due_age = max(0.0, (now - self.oldest_due).total_seconds())
        self.stats.dead = count_dead(ctx)
        self.stats.topics = topic_counters(ctx)
        return self.stats


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _now(ctx: ReadContext, now: float | None) -> datetime:
    # Whole microseconds, as the store keeps times, so "due at or before now" compares exactly.
    return to_datetime(to_us(ctx.clock.now() if now is None else now))


# -- paging ------------------------------------------------------------------------------------
def _keys_page(tr: Transaction, begin: bytes, end: bytes, limit: int) -> list[bytes]:
    return [key for key, _ in tr.snapshot.get_range(begin, end, limit=limit)]


def _each_key(ctx: ReadContext, prefix: bytes, first: list[bytes] | None = None
              ) -> Iterator[bytes]:
    """Every key under ``prefix``, a chunk per snapshot transaction (``first``: the first chunk,
    when the caller already read it)."""
    begin, end = prefix, strinc(prefix)
    page = first if first is not None else ctx.db.transact(_keys_page, begin, end, CHUNK)
    while True:
        yield from page
        if len(page) < CHUNK:
            return
        begin = page[-1] + b"\x00"
        page = ctx.db.transact(_keys_page, begin, end, CHUNK)


def _tenant_page(tr: Transaction, layout: Layout, after: bytes | None
                 ) -> list[tuple[bytes, str]]:
    return admin.pointer_tenants(tr.snapshot, layout, after, CHUNK)


def tenants(ctx: ReadContext) -> Iterator[str]:
    """Every tenant whose zone has a pointer (that is, every zone with work), in key order."""
    after: bytes | None = None
    while True:
        page = ctx.db.transact(_tenant_page, ctx.layout, after)
        yield from (tenant for _, tenant in page)
        if len(page) < CHUNK:
            return
        after = page[-1][0]


def count_dead(ctx: ReadContext, tenant: str | None = None) -> int:
    """Dead letters of one tenant (of all tenants when None)."""
    prefix = ctx.layout.dead_prefix if tenant is None else ctx.layout.zone(tenant).dead
    return sum(1 for _ in _each_key(ctx, prefix))


def _rows_page(tr: Transaction, begin: bytes, end: bytes, limit: int
               ) -> list[tuple[bytes, bytes]]:
    return list(tr.snapshot.get_range(begin, end, limit=limit))


def topic_counters(ctx: ReadContext) -> dict[str, dict[str, int]]:
    """Per-topic counters since the queue began (a few keys per topic, a chunk of them per
    transaction)."""
    out: dict[str, dict[str, int]] = {}
    prefix = ctx.layout.stats_prefix
    begin, end = prefix, strinc(prefix)
    while True:
        rows = ctx.db.transact(_rows_page, begin, end, CHUNK)
        for key, value in rows:
            topic, name = unpack(key, len(prefix))
            out.setdefault(str(topic), {})[str(name)] = read_counter(value)
        if len(rows) < CHUNK:
            return out
        begin = rows[-1][0] + b"\x00"


# -- zones -------------------------------------------------------------------------------------
def zone_view(ctx: ReadContext, tenant: str, lease_window: float = LEASE_WINDOW,
              now: float | None = None) -> ZoneView:
    """Depths and times of one zone (reads only the zone's index keys, never its records; one
    transaction unless a state holds more than a chunk of jobs)."""
    now_us = to_us(_now(ctx, now).timestamp())
    horizon = now_us + to_us(lease_window)
    zone = ctx.layout.zone(tenant)
    view = ZoneView(tenant)
    prefixes = (zone.ready, zone.scheduled, zone.leased)

    def first_pages(tr: Transaction) -> list[list[bytes]]:
        record = read_pointer(tr.snapshot, ctx.layout, tenant)
        if record is not None:
            view.pointer_due = to_datetime(record.vesting)
            view.pointer_leased = record.leased(now_us)
        return [_keys_page(tr, p, strinc(p), CHUNK) for p in prefixes]

    ready_page, scheduled_page, leased_page = ctx.db.transact(first_pages)
    oldest: int | None = None
    for key in _each_key(ctx, zone.ready, ready_page):
        view.ready += 1
        seq = int(unpack(key, len(zone.ready))[1])
        oldest = seq if oldest is None else min(oldest, seq)
    view.oldest_ready = to_datetime(oldest) if oldest is not None else None
    for key in _each_key(ctx, zone.scheduled, scheduled_page):
        if view.scheduled == 0:
            view.next_scheduled = to_datetime(int(unpack(key, len(zone.scheduled))[0]))
        view.scheduled += 1
    for key in _each_key(ctx, zone.leased, leased_page):
        expiry = int(unpack(key, len(zone.leased))[0])
        if view.leased == 0:
            view.next_lease_expiry = to_datetime(expiry)
        view.leased += 1
        view.expiring += expiry <= horizon
        view.expired += expiry <= now_us
    return view


def zone_views(ctx: ReadContext, lease_window: float = LEASE_WINDOW,
               now: float | None = None) -> Iterator[ZoneView]:
    """A view of every zone with a pointer, one after another (never all held at once)."""
    for tenant in tenants(ctx):
        yield zone_view(ctx, tenant, lease_window, now)


def _totals(ctx: ReadContext, zones: Iterable[ZoneView], now: datetime) -> _Totals:
    totals = _Totals()
    for zone in zones:
        totals.add(zone, now)
    return totals


def queue_stats(ctx: ReadContext, now: float | None = None) -> QueueStats:
    """The counts of ``JobQueue.stats()``: the same numbers as ``overview(...).stats``."""
    at = _now(ctx, now)
    return _totals(ctx, zone_views(ctx, now=at.timestamp()), at).finish(ctx, at)


# -- jobs --------------------------------------------------------------------------------------
def _load_jobs(ctx: ReadContext, tenant: str, job_ids: list[str]) -> list[JobInfo]:
    zone = ctx.layout.zone(tenant)

    def read(tr: Transaction) -> list[JobInfo]:
        # each record with its extension record (a lease's current expiry), all in one round
        keys = [key for job_id in job_ids
                for key in (zone.item(job_id), extension_key(zone, job_id))]
        values = tr.snapshot.get_many(keys)
        out = []
        for n, job_id in enumerate(job_ids):
            raw = values[2 * n]
            if raw is not None:  # the job moved on between the index read and this one
                record = JobRecord.decode(job_id, raw)
                out.append(JobInfo.of_record(tenant, with_extension(record, values[2 * n + 1])))
        return out

    return ctx.db.transact(read)


def zone_jobs(ctx: ReadContext, tenant: str, limit: int = 20) -> dict[str, list[JobInfo]]:
    """Up to ``limit`` jobs per state of one zone: ready in the order they will run,
    scheduled by due time, leased by lease expiry."""
    zone = ctx.layout.zone(tenant)
    out: dict[str, list[JobInfo]] = {}
    for state, prefix in (("ready", zone.ready), ("scheduled", zone.scheduled),
                          ("leased", zone.leased)):
        keys = ctx.db.transact(_keys_page, prefix, strinc(prefix), limit)
        out[state] = _load_jobs(ctx, tenant, [str(unpack(k, len(prefix))[-1]) for k in keys])
    return out


def expiring_leases(ctx: ReadContext, tenant: str, lease_window: float = LEASE_WINDOW,
                    limit: int = 20, now: float | None = None) -> list[JobInfo]:
    """Leased jobs of one zone whose lease ends within ``lease_window`` seconds (or has ended),
    soonest first."""
    zone = ctx.layout.zone(tenant)
    now_us = to_us(_now(ctx, now).timestamp())
    end = zone.leased + pack((now_us + to_us(lease_window) + 1,))
    keys = ctx.db.transact(_keys_page, zone.leased, end, limit)
    return _load_jobs(ctx, tenant, [str(unpack(key, len(zone.leased))[-1]) for key in keys])


def dead_letters(ctx: ReadContext, tenant: str | None = None, limit: int = 100
                 ) -> list[JobInfo]:
    """Up to ``limit`` dead letters (one tenant's or all), in key order."""
    rows = ctx.db.transact(
        lambda tr: admin.dead_page(tr.snapshot, ctx.layout, tenant, None, limit))
    return [info for _, info in rows]


# -- the overview ------------------------------------------------------------------------------
def overview(ctx: ReadContext, name: str, lease_window: float = LEASE_WINDOW,
             lease_limit: int = 20, zone_limit: int | None = None,
             now: float | None = None) -> Overview:
    """Totals (``queue_stats``'s), the ``zone_limit`` deepest zones with jobs (all when None)
    and the leases that end within ``lease_window`` seconds, for the queue called ``name``."""
    at = _now(ctx, now)
    totals = _Totals()
    # a heap with the shallowest kept zone on top, so a deeper one can replace it
    deepest: list[tuple[tuple[int, int, tuple[int, ...]], int, ZoneView]] = []
    expiring: list[JobInfo] = []
    for n, zone in enumerate(zone_views(ctx, lease_window, at.timestamp())):
        totals.add(zone, at)
        if zone.jobs:
            entry = (_negated(zone.depth_order()), n, zone)
            if zone_limit is None or len(deepest) < zone_limit:
                heapq.heappush(deepest, entry)
            elif zone_limit > 0 and entry > deepest[0]:
                heapq.heapreplace(deepest, entry)
        if zone.expiring:
            expiring.extend(expiring_leases(ctx, zone.tenant, lease_window, lease_limit,
                                            at.timestamp()))
            expiring = sorted(expiring, key=_lease_end)[:lease_limit]  # soonest, bounded
    zones = sorted((z for _, _, z in deepest), key=ZoneView.depth_order)
    stats = totals.finish(ctx, at)
    return Overview(name, at, stats, zones, totals.with_jobs, expiring, lease_window,
                    read_flow(ctx.db, ctx.layout))


def _lease_end(job: JobInfo) -> datetime:
    return job.lease_expires_at or to_datetime(0)


def _negated(order: tuple[int, int, str]) -> tuple[int, int, tuple[int, ...]]:
    """The reverse of ``ZoneView.depth_order``, so the heap's top is the shallowest zone."""
    return (-order[0], -order[1], (*(-ord(c) for c in order[2]), 1))
