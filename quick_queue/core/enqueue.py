"""Enqueue (DESIGN.md §4, transaction 1), inside the caller's transaction.

Blind writes of the record and one index entry, plus the pointer check of ``touch_pointer``
(a regular read of the zone's marker). The zone's ranges are never read, so producers do not
conflict with each other or with consumers, except on a zone's empty-to-non-empty edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quick_queue.core.pointers import ASAP, encode_promise, touch_pointer
from quick_queue.core.records import Stats, flush_stats, stat_add
from quick_queue.keys import Layout, pack_int, pack_str
from quick_queue.kv.api import Transaction
from quick_queue.models import JobRecord, dump, new_record_template

ASAP_MARKER = encode_promise(ASAP)  # a zone with ready work: every new job is covered


def _template_of(topic: str, priority: int, max_retries: int | None) -> bytes | None:
    """The record template of a ready job of this kind (``JobRecord.new_value``'s fast case),
    None when its topic is not ASCII (new_value's other path then writes it)."""
    return new_record_template(topic, priority, max_retries, "r") if topic.isascii() else None


@dataclass(slots=True)
class NewJob:
    """One job to enqueue; ``job_id`` is made before the transaction runs (retries reuse it).

    Treat it as immutable (``dataclasses.replace`` for a variant): not ``frozen=True`` only
    because a frozen dataclass's ``__init__`` costs 2.8 µs against 0.5, per job of an
    ``enqueue_many``."""

    tenant: str
    job_id: str
    topic: str
    payload: Any  # JSON-ready data, or its JSON text as bytes (JobQueue encodes it up front)
    priority: int
    max_retries: int | None  # None: the worker's handler (or its queue's setting) decides
    due: int  # microseconds since the epoch
    key: str | None = None
    trace: str | None = None  # W3C traceparent of the enqueue span (quick_queue.otel), if any
    # The id was made for this call (no key=): no job can hold it unless an earlier attempt of
    # this same transaction committed, which only a 1021 leaves in doubt (``unknown_result``).
    fresh: bool = False


def may_write_blind(tr: Transaction, job: NewJob) -> bool:
    """Whether ``job`` may be written without looking for an earlier copy of it (see
    ``enqueue``): its id is fresh and no attempt of this transaction may have committed."""
    return job.fresh and not tr.unknown_result


def enqueue(
    tr: Transaction, layout: Layout, job: NewJob, now: int, slack: int,
    stats: Stats | None = None,
) -> str:
    """Write ``job`` (see the module docstring); ``stats``: count it there instead of in its
    counter (the caller flushes the counts)."""
    zone = layout.zone(job.tenant)
    if may_write_blind(tr, job):
        # A fresh id cannot collide: only the marker is read (what touch_pointer needs), by a
        # transaction that writes: the commit may prove it (kv.api.get_before_write).
        write_job(tr, layout, job, now, slack, tr.get_before_write(zone.marker), stats)
        return job.job_id
    # Every enqueue is idempotent per job id: the id is made before the retry loop (from the
    # key= when given), so the retry after a commit_unknown_result (1021) that did commit finds
    # the job and writes nothing, instead of resetting a job a consumer may have leased by then.
    # The regular reads also make two racing enqueues of one key conflict: one job results.
    # One read for the three keys enqueue needs (on SQLite one query, on FoundationDB three
    # reads in flight at once); the marker is what touch_pointer reads.
    live, dead, marker = tr.get_many(
        [zone.item(job.job_id), zone.dead_key(job.job_id), zone.marker]
    )
    if live is None and dead is None:
        write_job(tr, layout, job, now, slack, marker, stats)
    return job.job_id


def enqueue_many(
    tr: Transaction, layout: Layout, jobs: list[NewJob], now: int, slack: int
) -> list[str]:
    """``enqueue`` for a batch in one transaction: every read of the batch in one go, and one
    counter update per topic."""
    keys: list[bytes] = []
    checked: list[int] = []  # the jobs that may already exist (keyed, or a retry after 1021)
    for i, job in enumerate(jobs):
        if not may_write_blind(tr, job):
            zone = layout.zone(job.tenant)
            keys.append(zone.item(job.job_id))
            keys.append(zone.dead_key(job.job_id))
            checked.append(i)
    tenants = list(dict.fromkeys(job.tenant for job in jobs))
    values = tr.get_many(keys + [layout.marker(tenant) for tenant in tenants])
    markers = dict(zip(tenants, values[len(keys):], strict=True))
    there = {
        i for n, i in enumerate(checked)
        if values[2 * n] is not None or values[2 * n + 1] is not None
    }
    stats: Stats = {}
    # The jobs' records and index entries, set in one call (tr.set_many: ~0.8 µs a job less
    # than two tr.set calls on the embedded engine, measured in batches of 1,000)
    pairs: list[tuple[bytes, bytes]] = []
    written: set[tuple[str, str]] = set()
    # The common job of a batch (ready now, no key or trace, in a zone whose pointer already
    # says "ready work": every job after a tenant's first) is written by the loop itself, with
    # what write_job would compute for it made once a batch: the zone's items prefix and the
    # ready entries' prefix by (tenant, priority, due), the record template by (topic,
    # priority, max_retries). Same keys and bytes as write_job's (a test compares them);
    # enqueue_many of 1,000 jobs: see the commit message for the figures.
    heads: dict[tuple[str, int, int], tuple[bytes, bytes]] = {}
    templates: dict[tuple[str, int, int | None], bytes | None] = {}
    for i, job in enumerate(jobs):
        if i in there:
            continue
        if not job.fresh:
            if (job.tenant, job.job_id) in written:
                continue  # the same keyed job twice in one batch: once
            written.add((job.tenant, job.job_id))
        tenant, due = job.tenant, job.due
        if markers[tenant] == ASAP_MARKER and due <= now and job.key is None \
                and job.trace is None and type(job.payload) is bytes:
            topic, priority = job.topic, job.priority
            kind = (topic, priority, job.max_retries)
            if kind not in templates:
                templates[kind] = _template_of(*kind)
            template = templates[kind]
            if template is not None:
                head = heads.get((tenant, priority, due))
                if head is None:
                    zone = layout.zone(tenant)
                    head = heads[(tenant, priority, due)] = (
                        zone.items, zone.ready + pack_int(priority) + pack_int(due)
                    )
                packed = pack_str(job.job_id)
                pairs += ((head[0] + packed, template % (due, due, now, job.payload)),
                          (head[1] + packed, b""))
                count = (topic, "enqueued")
                stats[count] = stats.get(count, 0) + 1
                continue
        markers[tenant] = write_job(tr, layout, job, now, slack, markers[tenant], stats, pairs)
    tr.set_many(pairs)
    flush_stats(tr, layout, stats)
    return [job.job_id for job in jobs]


def write_job(
    tr: Transaction, layout: Layout, job: NewJob, now: int, slack: int,
    marker: bytes | None, stats: Stats | None, pairs: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The job's record and index entry (into ``pairs`` when given, for one ``set_many``),
    its count (into ``stats`` when given, else its counter) and the zone's pointer; returns
    the marker's value afterwards."""
    payload = job.payload if isinstance(job.payload, bytes) else dump(job.payload)
    due = job.due
    ready = due <= now
    item, entry = layout.zone(job.tenant).new_job_keys(job.job_id, job.priority, due, ready)
    value = JobRecord.new_value(
        job.job_id, job.topic, job.priority, job.max_retries, "r" if ready else "s", due, now,
        job.key, job.trace, payload,
    )
    if pairs is None:
        tr.set(item, value)
        tr.set(entry, b"")
    else:
        pairs += ((item, value), (entry, b""))
    if stats is None:
        stat_add(tr, layout, job.topic, "enqueued")
    else:
        stats[(job.topic, "enqueued")] = stats.get((job.topic, "enqueued"), 0) + 1
    if marker == ASAP_MARKER:
        return marker  # touch_pointer's first answer, without its call (enqueue_many: per job)
    return touch_pointer(tr, layout, job.tenant, due, now, slack, marker)
