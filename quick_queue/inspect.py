"""Read-only views of a queue, read from the store (never from live workers), in chunks of
short snapshot transactions so they never hold up producers or consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quick_queue.core import admin
from quick_queue.kv.api import Transaction
from quick_queue.models import QueueStats, ZoneStats, to_us

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
