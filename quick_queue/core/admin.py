"""Jobs by id (DESIGN.md §4, transaction 9): lookup, cancel, dead-letter retry and purge, and
the read-only counts behind ``stats()`` and ``quick-queue inspect``."""

from __future__ import annotations

from collections.abc import Callable

from quick_queue.core import history
from quick_queue.core.pointers import read_pointer, touch_pointer
from quick_queue.core.records import (
    UNREADABLE_TOPIC,
    clear_index,
    extension_key,
    stat_add,
    with_extension,
)
from quick_queue.errors import InvalidArgument, UnreadableRecord
from quick_queue.keys import Layout, read_counter, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import DeadRecord, JobInfo, JobRecord, ZoneStats, to_datetime, to_us
from quick_queue.outcomes import FinalState

# topic -> the max_retries the reader's handler would apply (see core.dequeue.RetriesOf)
RetriesOf = Callable[[str], int | None]


def _decoded(
    job_id: str, raw: bytes, dead: bool, now: int, retries_of: RetriesOf | None = None
) -> JobRecord:
    """``raw`` decoded; what cannot be decoded comes back as an "unreadable" record holding
    the stored bytes (a dead letter when it was read from the dead letters). A record whose
    producer fixed no ``max_retries`` shows the limit ``retries_of`` gives for its topic."""
    try:
        record = JobRecord.decode(job_id, raw)
        if retries_of is not None and not record.retries_set:
            record.max_retries = record.resolve_max_retries(retries_of(record.topic))
        return record
    except UnreadableRecord as error:
        record = JobRecord.unreadable(job_id, raw, now, error.reason, 0)
        if not dead:
            record.state = "u"  # still live: a worker buries it when it meets it
        return record


def live_info(tenant: str, job_id: str, raw: bytes, now: int = 0,
              retries_of: RetriesOf | None = None, extension: bytes | None = None) -> JobInfo:
    """The ``JobInfo`` of a live record's stored bytes; never raises on undecodable bytes (state
    "unreadable", the bytes as payload). For views that read records themselves.
    ``extension``: the job's extension record (``core.records.extension_key``), read with it,
    so a lease shows its current expiry."""
    record = _decoded(job_id, raw, False, now, retries_of)
    if record.state == "u":
        return JobInfo.unreadable(tenant, record)
    return JobInfo.of_record(tenant, with_extension(record, extension))


def lookup(
    tr: ReadView, layout: Layout, tenant: str, job_id: str, now: int = 0,
    retries_of: RetriesOf | None = None,
) -> JobInfo | None:
    """The job ``job_id`` of ``tenant``, live or dead, else its kept history entry (a job that
    kept its result, until the entry expires); None if there is none. A record that cannot be
    decoded is shown with state "unreadable" (live) or dead_kind "unreadable"."""
    zone = layout.zone(tenant)
    raw, dead, kept, extension = tr.get_many(
        [zone.item(job_id), zone.dead_key(job_id), layout.history(tenant, job_id),
         extension_key(zone, job_id)]
    )
    if raw is not None:
        return live_info(tenant, job_id, raw, now, retries_of, extension)
    entry = history.of_raw(tenant, job_id, kept, now)
    if dead is not None:
        info = JobInfo.of_dead(tenant, DeadRecord(_decoded(job_id, dead, True, now, retries_of)))
        return history.with_timings(info, entry) if entry is not None else info
    return history.info(entry) if entry is not None else None


# topic -> seconds a finished job of that topic is kept (0: nothing), as the caller's handler
# (else its queue setting) says: a cancel writes the entry for the job's handler
KeepOf = Callable[[str], float]


def cancel(tr: Transaction, layout: Layout, tenant: str, job_id: str,
           keep_of: KeepOf | None = None, now: int = 0) -> bool:
    """Remove a live job (a running one too: its completion will then be stale). With
    ``keep_of``, a job whose topic keeps results leaves a "cancelled" history entry."""
    zone = layout.zone(tenant)
    raw = tr.get(zone.item(job_id))
    if raw is None:
        return False
    topic = UNREADABLE_TOPIC
    try:
        record = JobRecord.decode(job_id, raw)
    except UnreadableRecord:
        pass  # its index entry, if any, is dropped by the next visit that meets it
    else:
        clear_index(tr, zone, record)
        topic = record.topic
        keep = keep_of(topic) if keep_of is not None else 0
        if keep:
            history.write_record(tr, layout, tenant, record, FinalState.CANCELLED, to_us(keep),
                                 now, record.error)
            history.prune_for(tr, layout, now, 1)
    tr.clear(zone.item(job_id))
    stat_add(tr, layout, topic, "cancelled")
    return True


def retry_dead(
    tr: Transaction, layout: Layout, tenant: str, job_id: str, now: int, slack: int
) -> bool:
    """Bring a dead letter back as a ready job with a fresh retry budget."""
    zone = layout.zone(tenant)
    raw = tr.get(zone.dead_key(job_id))
    if raw is None:
        return False
    record = _decoded(job_id, raw, True, now)
    if record.raw_body:
        raise InvalidArgument(
            f"dead letter {job_id!r} of tenant {tenant!r} is a record that could not be "
            "decoded, so it cannot run again; read its bytes with get_job(), then remove it "
            "with purge_dead(tenant, job_id=...)"
        )
    # The dead letter is the record itself: back to ready, payload text untouched.
    error = record.reason
    record.state, record.at, record.seq, record.attempt, record.snoozes = "r", now, now, 0, 0
    record.error, record.dead_kind, record.reason, record.died = error, None, None, 0
    tr.clear(zone.dead_key(job_id))
    tr.set(zone.item(job_id), record.encode())
    tr.set(zone.ready_key(record.priority, now, job_id), b"")
    stat_add(tr, layout, record.topic, "revived")
    touch_pointer(tr, layout, tenant, now, now, slack)
    return True


def dead_page(
    tr: ReadView, layout: Layout, tenant: str | None, after: bytes | None, limit: int,
    retries_of: RetriesOf | None = None,
) -> list[tuple[bytes, JobInfo]]:
    """Dead letters in key order (one tenant or all), ``limit`` of them after key ``after``."""
    prefix = layout.zone(tenant).dead if tenant is not None else layout.dead_prefix
    begin = after + b"\x00" if after is not None else prefix
    rows = tr.get_range(begin, prefix + b"\xff", limit=limit)
    out = []
    for key, value in rows:
        parts = unpack(key, len(layout.dead_prefix))
        owner, job_id = str(parts[0]), str(parts[1])
        record = _decoded(job_id, value, True, 0, retries_of)
        out.append((key, JobInfo.of_dead(owner, DeadRecord(record))))
    return out


def purge_dead_one(tr: Transaction, layout: Layout, tenant: str, job_id: str) -> bool:
    """Delete the dead letter ``job_id`` of ``tenant``; False if there is none."""
    key = layout.zone(tenant).dead_key(job_id)
    if tr.get(key) is None:
        return False
    tr.clear(key)
    return True


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
