"""Reading and moving job records: the small steps every core transaction shares."""

from __future__ import annotations

from quick_queue.keys import Layout, Zone, counter
from quick_queue.kv.api import Transaction
from quick_queue.models import DeadRecord, JobRecord

Stats = dict[tuple[str, str], int]


def load_record(tr: Transaction, zone: Zone, job_id: str) -> JobRecord | None:
    raw = tr.get(zone.item(job_id))
    return JobRecord.decode(job_id, raw) if raw is not None else None


def clear_index(tr: Transaction, zone: Zone, record: JobRecord) -> None:
    tr.clear(zone.index_key(record.state, record.priority, record.at, record.job_id))


def bury(
    tr: Transaction,
    zone: Zone,
    record: JobRecord,
    now: int,
    kind: str,
    reason: str,
    stats: Stats,
) -> None:
    """Move a live job to the dead letters. Its index entry must already be cleared."""
    tr.clear(zone.item(record.job_id))
    tr.set(zone.dead_key(record.job_id), DeadRecord.of(record, now, kind, reason).encode())
    stats[(record.topic, "dead")] = stats.get((record.topic, "dead"), 0) + 1


def stat_add(tr: Transaction, layout: Layout, topic: str, name: str, amount: int = 1) -> None:
    tr.add(layout.stat(topic, name), counter(amount))


def flush_stats(tr: Transaction, layout: Layout, stats: Stats) -> None:
    for (topic, name), amount in stats.items():
        if amount:
            stat_add(tr, layout, topic, name, amount)
