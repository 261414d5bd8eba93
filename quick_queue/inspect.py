"""Read-only views of a queue, read from the store (never from live workers), in chunks of
short snapshot transactions so they never hold up producers or consumers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from quick_queue.core import admin
from quick_queue.core.pointers import read_pointer
from quick_queue.keys import pack, unpack
from quick_queue.kv.api import Transaction, strinc
from quick_queue.models import JobInfo, JobRecord, QueueStats, ZoneStats, to_datetime, to_us

if TYPE_CHECKING:
    from quick_queue.queue import JobQueue

CHUNK = 1000


def _tenant_page(tr: Transaction, queue: JobQueue, after: bytes | None) -> list[tuple[bytes, str]]:
    return admin.pointer_tenants(tr.snapshot, queue.layout, after, CHUNK)


def _count_page(tr: Transaction, begin: bytes, end: bytes) -> tuple[int, bytes | None]:
    return admin.count_range(tr.snapshot, begin, end, CHUNK)


def each_tenant(queue: JobQueue) -> list[str]:
    """Every tenant whose zone has a pointer (that is, every zone with work)."""
    tenants: list[str] = []
    after: bytes | None = None
    while True:
        page = queue.db.transact(_tenant_page, queue, after)
        tenants.extend(t for _, t in page)
        if len(page) < CHUNK:
            return tenants
        after = page[-1][0]


def zone_stats(queue: JobQueue, tenant: str, limit: int = 1_000_000) -> ZoneStats:
    now = to_us(queue.clock.now())

    def read(tr: Transaction) -> ZoneStats:
        return admin.zone_stats(tr.snapshot, queue.layout, tenant, now, limit)

    return queue.db.transact(read)


def count_dead(queue: JobQueue) -> int:
    total = 0
    begin = queue.layout.dead_prefix
    end = begin + b"\xff"
    while True:
        n, last = queue.db.transact(_count_page, begin, end)
        total += n
        if n < CHUNK or last is None:
            return total
        begin = last + b"\x00"


def collect_stats(queue: JobQueue) -> QueueStats:
    stats = QueueStats()
    now = to_us(queue.clock.now())
    oldest_due: int | None = None
    for tenant in each_tenant(queue):
        zone = zone_stats(queue, tenant)
        stats.zones += 1
        stats.ready += zone.ready
        stats.scheduled += zone.scheduled
        stats.leased += zone.leased
        if zone.ready and zone.next_due is not None:
            stats.due_zones += 1
            due_us = to_us(zone.next_due.timestamp())
            oldest_due = due_us if oldest_due is None else min(oldest_due, due_us)
    stats.dead = count_dead(queue)
    stats.topics = queue.db.transact(lambda tr: admin.topic_counters(tr.snapshot, queue.layout))
    if oldest_due is not None:
        stats.oldest_due_age = max(0.0, (now - oldest_due) / 1e6)
    return stats


# -- views for ``quick-queue inspect`` (all read-only, chunked snapshot reads) -------------------
LEASE_WINDOW = 10.0  # seconds: "leases about to expire" means within this window (or expired)


@dataclass
class ZoneView:
    """One zone as ``quick-queue inspect`` shows it: depth per state and the times that matter.

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
    """Everything ``quick-queue inspect`` prints: ``stats`` (the ``QueueStats`` shape), every
    zone with a pointer, and the leases about to expire (soonest first, at most a page)."""

    queue: str
    now: datetime
    stats: QueueStats
    zones: list[ZoneView]
    expiring: list[JobInfo]
    lease_window: float

    def to_dict(self) -> dict[str, Any]:
        out = self.stats.to_dict()
        out.update({
            "queue": self.queue, "now": self.now.isoformat(),
            "lease_window_seconds": self.lease_window,
            "zones_with_jobs": sum(1 for z in self.zones if z.jobs),
            "zone_list": [z.to_dict() for z in self.zones],
            "expiring_leases": [j.to_dict() for j in self.expiring],
        })
        return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _keys_page(tr: Transaction, begin: bytes, end: bytes, limit: int) -> list[bytes]:
    return [key for key, _ in tr.snapshot.get_range(begin, end, limit=limit)]


def _each_key(queue: JobQueue, prefix: bytes, first: list[bytes] | None = None) -> Iterator[bytes]:
    """Every key under ``prefix``, read in chunks of short snapshot transactions (``first``:
    the first chunk, when the caller already read it)."""
    begin, end = prefix, strinc(prefix)
    page = first if first is not None else queue.db.transact(_keys_page, begin, end, CHUNK)
    while True:
        yield from page
        if len(page) < CHUNK:
            return
        begin = page[-1] + b"\x00"
        page = queue.db.transact(_keys_page, begin, end, CHUNK)


def zone_view(
    queue: JobQueue, tenant: str, lease_window: float = LEASE_WINDOW, now: float | None = None
) -> ZoneView:
    """Depths and times of one zone (reads only the zone's index keys, never its records; one
    transaction unless a state holds more than a chunk of jobs)."""
    now_us = to_us(queue.clock.now() if now is None else now)
    horizon = now_us + to_us(lease_window)
    zone = queue.layout.zone(tenant)
    view = ZoneView(tenant)
    prefixes = (zone.ready, zone.scheduled, zone.leased)

    def first_pages(tr: Transaction) -> list[list[bytes]]:
        record = read_pointer(tr.snapshot, queue.layout, tenant)
        if record is not None:
            view.pointer_due = to_datetime(record.vesting)
            view.pointer_leased = record.leased(now_us)
        return [_keys_page(tr, p, strinc(p), CHUNK) for p in prefixes]

    ready_page, scheduled_page, leased_page = queue.db.transact(first_pages)
    oldest: int | None = None
    for key in _each_key(queue, zone.ready, ready_page):
        view.ready += 1
        seq = int(unpack(key, len(zone.ready))[1])
        oldest = seq if oldest is None else min(oldest, seq)
    view.oldest_ready = to_datetime(oldest) if oldest is not None else None
    for key in _each_key(queue, zone.scheduled, scheduled_page):
        if view.scheduled == 0:
            view.next_scheduled = to_datetime(int(unpack(key, len(zone.scheduled))[0]))
        view.scheduled += 1
    for key in _each_key(queue, zone.leased, leased_page):
        expiry = int(unpack(key, len(zone.leased))[0])
        if view.leased == 0:
            view.next_lease_expiry = to_datetime(expiry)
        view.leased += 1
        if expiry <= horizon:
            view.expiring += 1
        if expiry <= now_us:
            view.expired += 1
    return view


def _load_jobs(queue: JobQueue, tenant: str, job_ids: list[str]) -> list[JobInfo]:
    zone = queue.layout.zone(tenant)

    def read(tr: Transaction) -> list[JobInfo]:
        out = []
        for job_id in job_ids:
            raw = tr.snapshot.get(zone.item(job_id))
            if raw is not None:  # the job moved on between the index read and this one
                out.append(JobInfo.of_record(tenant, JobRecord.decode(job_id, raw)))
        return out

    return queue.db.transact(read)


def zone_jobs(queue: JobQueue, tenant: str, limit: int = 20) -> dict[str, list[JobInfo]]:
    """Up to ``limit`` jobs per state of one zone: ready in the order they will run,
    scheduled by due time, leased by lease expiry."""
    zone = queue.layout.zone(tenant)
    out: dict[str, list[JobInfo]] = {}
    for state, prefix in (("ready", zone.ready), ("scheduled", zone.scheduled),
                          ("leased", zone.leased)):
        keys = queue.db.transact(_keys_page, prefix, strinc(prefix), limit)
        ids = [str(unpack(key, len(prefix))[-1]) for key in keys]
        out[state] = _load_jobs(queue, tenant, ids)
    return out


def expiring_leases(
    queue: JobQueue, tenant: str, lease_window: float = LEASE_WINDOW, limit: int = 20,
    now: float | None = None,
) -> list[JobInfo]:
    """Leased jobs of one zone whose lease ends within ``lease_window`` seconds (or has ended),
    soonest first."""
    zone = queue.layout.zone(tenant)
    now_us = to_us(queue.clock.now() if now is None else now)
    end = zone.leased + pack((now_us + to_us(lease_window) + 1,))
    keys = queue.db.transact(_keys_page, zone.leased, end, limit)
    return _load_jobs(queue, tenant, [str(unpack(key, len(zone.leased))[-1]) for key in keys])


def count_dead_of(queue: JobQueue, tenant: str | None = None) -> int:
    """Dead letters of one tenant (all tenants when None)."""
    if tenant is None:
        return count_dead(queue)
    return sum(1 for _ in _each_key(queue, queue.layout.zone(tenant).dead))


def overview(
    queue: JobQueue, lease_window: float = LEASE_WINDOW, lease_limit: int = 20
) -> Overview:
    """Every zone with a pointer, totals in the ``QueueStats`` shape, and the leases that end
    within ``lease_window`` seconds. Chunked reads: not one consistent snapshot."""
    now = queue.clock.now()
    now_us = to_us(now)
    stats = QueueStats()
    zones = [zone_view(queue, tenant, lease_window, now) for tenant in each_tenant(queue)]
    oldest: datetime | None = None
    expiring: list[JobInfo] = []
    now_dt = to_datetime(now_us)
    for zone in zones:
        stats.zones += 1
        stats.ready += zone.ready
        stats.scheduled += zone.scheduled
        stats.leased += zone.leased
        due = zone.due_since(now_dt)
        if due is not None:
            stats.due_zones += 1
            if oldest is None or due < oldest:
                oldest = due
        if zone.expiring:
            expiring.extend(expiring_leases(queue, zone.tenant, lease_window, lease_limit, now))
    if oldest is not None:
        stats.oldest_due_age = max(0.0, (now_us - to_us(oldest.timestamp())) / 1e6)
    stats.dead = count_dead(queue)
    stats.topics = queue.db.transact(lambda tr: admin.topic_counters(tr.snapshot, queue.layout))
    expiring.sort(key=lambda j: j.lease_expires_at or to_datetime(0))
    return Overview(queue.name, now_dt, stats, zones, expiring[:lease_limit], lease_window)
