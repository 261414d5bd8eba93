"""Reading and moving job records: the small steps every core transaction shares."""

from __future__ import annotations

from quick_queue.keys import Layout, Zone, counter
from quick_queue.kv.api import Transaction
from quick_queue.models import JobRecord

Stats = dict[tuple[str, str], int]
UNREADABLE_TOPIC = "?"  # the topic an unreadable record is counted and listed under


def load_record(tr: Transaction, zone: Zone, job_id: str) -> JobRecord | None:
    """The live record of ``job_id``, None if there is none; ``UnreadableRecord`` (with the
    stored bytes) if what is stored cannot be decoded."""
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
    """Move a live job to the dead letters. Its index entry must already be cleared.

    The dead letter is the record itself (its payload text carried over unparsed) with the
    dead fields; an over-long reason is trimmed to fit one value (``JobRecord.encode``)."""
    tr.clear(zone.item(record.job_id))
    record.bury(now, kind, reason)
    tr.set(zone.dead_key(record.job_id), record.encode())
    stats[(record.topic, "dead")] = stats.get((record.topic, "dead"), 0) + 1


def bury_unreadable(
    tr: Transaction, zone: Zone, job_id: str, raw: bytes, now: int, reason: str, stats: Stats,
) -> None:
    """Move a record that cannot be decoded to the dead letters, its stored bytes kept (see
    ``JobRecord.unreadable``). Its index entry, which the caller met, must be cleared."""
    tr.clear(zone.item(job_id))
    dead = JobRecord.unreadable(
        job_id, raw, now, f"the stored record could not be decoded: {reason}", 0
    )
    tr.set(zone.dead_key(job_id), dead.encode())
    stats[(UNREADABLE_TOPIC, "dead")] = stats.get((UNREADABLE_TOPIC, "dead"), 0) + 1


def stat_add(tr: Transaction, layout: Layout, topic: str, name: str, amount: int = 1) -> None:
    tr.add(layout.stat(topic, name), counter(amount))


def flush_stats(tr: Transaction, layout: Layout, stats: Stats) -> None:
    for (topic, name), amount in stats.items():
        if amount:
            stat_add(tr, layout, topic, name, amount)
