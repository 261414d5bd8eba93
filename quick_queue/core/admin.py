"""Jobs by id (DESIGN.md §4, transaction 9): lookup, cancel, dead-letter retry and purge, and
the read-only counts behind ``stats()`` and ``quick-queue inspect``."""

from __future__ import annotations

from quick_queue.core.pointers import read_pointer, touch_pointer
from quick_queue.core.records import clear_index, load_record, stat_add
from quick_queue.keys import Layout, read_counter, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import DeadRecord, JobInfo, JobRecord, ZoneStats, to_datetime


def lookup(tr: Transaction, layout: Layout, tenant: str, job_id: str) -> JobInfo | None:
    zone = layout.zone(tenant)
    record = load_record(tr, zone, job_id)
    if record is not None:
        return JobInfo.of_record(tenant, record)
    raw = tr.get(zone.dead_key(job_id))
    if raw is not None:
        return JobInfo.of_dead(tenant, DeadRecord.decode(job_id, raw))
    return None


def cancel(tr: Transaction, layout: Layout, tenant: str, job_id: str) -> bool:
    """Remove a live job (a running one too: its completion will then be stale)."""
    zone = layout.zone(tenant)
    record = load_record(tr, zone, job_id)
    if record is None:
        return False
    clear_index(tr, zone, record)
    tr.clear(zone.item(job_id))
    stat_add(tr, layout, record.topic, "cancelled")
    return True


def retry_dead(
    tr: Transaction, layout: Layout, tenant: str, job_id: str, now: int, slack: int
) -> bool:
    """Bring a dead letter back as a ready job with a fresh retry budget."""
    zone = layout.zone(tenant)
    raw = tr.get(zone.dead_key(job_id))
    if raw is None:
        return False
    dead = DeadRecord.decode(job_id, raw)
    record = JobRecord(
        job_id, dead.topic, dead.payload, dead.priority, dead.max_retries, "r", now, now,
        dead.enqueued, key=dead.key, error=dead.reason,
    )
    tr.clear(zone.dead_key(job_id))
    tr.set(zone.item(job_id), record.encode())
    tr.set(zone.ready_key(record.priority, now, job_id), b"")
    stat_add(tr, layout, record.topic, "revived")
    touch_pointer(tr, layout, tenant, now, now, slack)
    return True


def dead_page(
    tr: ReadView, layout: Layout, tenant: str | None, after: bytes | None, limit: int
) -> list[tuple[bytes, JobInfo]]:
    """Dead letters in key order (one tenant or all), ``limit`` of them after key ``after``."""
    prefix = layout.zone(tenant).dead if tenant is not None else layout.dead_prefix
    begin = after + b"\x00" if after is not None else prefix
    rows = tr.get_range(begin, prefix + b"\xff", limit=limit)
    out = []
    for key, value in rows:
        parts = unpack(key, len(layout.dead_prefix))
        owner, job_id = str(parts[0]), str(parts[1])
        out.append((key, JobInfo.of_dead(owner, DeadRecord.decode(job_id, value))))
    return out


def purge_dead_page(
    tr: Transaction, layout: Layout, tenant: str | None, limit: int
) -> int:
    """Delete up to ``limit`` dead letters; the count deleted (call until it returns 0)."""
    prefix = layout.zone(tenant).dead if tenant is not None else layout.dead_prefix
    rows = tr.get_range(prefix, prefix + b"\xff", limit=limit)
    if rows:
        tr.clear_range(prefix, rows[-1][0] + b"\x00")
    return len(rows)


def count_range(tr: ReadView, begin: bytes, end: bytes, limit: int) -> tuple[int, bytes | None]:
    """Count keys in [begin, end) up to ``limit``; the last key seen, to continue from."""
    rows = tr.get_range(begin, end, limit=limit)
    return len(rows), (rows[-1][0] if rows else None)


def topic_counters(tr: ReadView, layout: Layout) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    offset = len(layout.stats_prefix)
    for key, value in tr.get_range(layout.stats_prefix, layout.stats_prefix + b"\xff"):
        topic, name = unpack(key, offset)
        out.setdefault(str(topic), {})[str(name)] = read_counter(value)
    return out


def zone_stats(tr: ReadView, layout: Layout, tenant: str, now: int, limit: int) -> ZoneStats:
    zone = layout.zone(tenant)
    stats = ZoneStats(tenant)
    stats.ready = len(tr.get_range(zone.ready, zone.ready + b"\xff", limit=limit))
    stats.scheduled = len(tr.get_range(zone.scheduled, zone.scheduled + b"\xff", limit=limit))
    stats.leased = len(tr.get_range(zone.leased, zone.leased + b"\xff", limit=limit))
    pointer = read_pointer(tr, layout, tenant)
    if pointer is not None:
        stats.next_due = to_datetime(pointer.vesting)
        stats.pointer_leased = pointer.leased(now)
    return stats


def pointer_tenants(
    tr: ReadView, layout: Layout, after: bytes | None, limit: int
) -> list[tuple[bytes, str]]:
    """Tenants whose zone has a pointer (every zone with work has one), in key order."""
    begin = after + b"\x00" if after is not None else layout.marker_prefix
    rows = tr.get_range(begin, layout.marker_prefix + b"\xff", limit=limit)
    return [(key, str(unpack(key, len(layout.marker_prefix))[0])) for key, _ in rows]
