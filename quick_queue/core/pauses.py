"""Pauses of a tenant or a topic (issue 13): one empty key each, ``flow/tenant/{tenant}`` or
``flow/topic/{topic}``.

A paused tenant's zone is *parked*: its pointer is moved to ``PARKED`` (far in the future), so
no scanner sees it due, and its marker promises ``ASAP`` so producers adding jobs to it leave
the pointer alone (the jobs simply wait). Parking reads the pause key with a regular read, and
resuming clears that key and re-vests a parked pointer in one transaction, so a park by a
worker whose view of the pauses is stale and a resume always conflict: a resumed zone is never
left parked. Jobs of a paused zone stay where they are (ready, scheduled, or leased by an
attempt that finishes normally): nothing is spent or lost.
"""

from __future__ import annotations

from quick_queue.core.pointers import (
    ASAP,
    decode_promise,
    encode_promise,
    read_pointer,
    touch_pointer,
    write_pointer,
)
from quick_queue.core.records import undo_lease
from quick_queue.keys import Layout, pack_str, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import JobRecord, LeasedJob, PointerRecord

KINDS = ("tenant", "topic")
# The vesting of a parked pointer and the due time of a set-aside job: never due, yet a time
# every view can still show (9999-12-31 23:59:59 UTC).
PARKED = 253_402_300_799_000_000
LIST_LIMIT = 10_000


def set_pause(tr: Transaction, layout: Layout, kind: str, name: str) -> bool:
    """Pause; False when it already was."""
    key = layout.pause(kind, name)
    if tr.get(key) is not None:
        return False
    tr.set(key, b"")
    return True


def clear_pause(tr: Transaction, layout: Layout, kind: str, name: str, now: int) -> bool:
    """Resume; a tenant's parked zone is due again at once. False when it was not paused."""
    key = layout.pause(kind, name)
    if tr.get(key) is None:
        return False
    tr.clear(key)
    if kind == "tenant":
        pointer = read_pointer(tr, layout, name)
        if pointer is not None and pointer.vesting == PARKED:
            write_pointer(tr, layout, name, pointer,
                          PointerRecord(now, None, 0, pointer.last_active))
    return True


def park_zone(tr: Transaction, layout: Layout, tenant: str, now: int) -> bool:
    """Park the due, unleased zone of a paused tenant; False if the tenant is not paused (any
    more) or the zone is not due or is held by a consumer (it is looked at again later)."""
    if tr.get(layout.pause("tenant", tenant)) is None:
        return False
    pointer = read_pointer(tr, layout, tenant)
    if pointer is None or pointer.vesting > now or pointer.leased(now):
        return False
    marker = layout.marker(tenant)
    raw = tr.get(marker)
    if raw is None or decode_promise(raw) != ASAP:
        tr.set(marker, encode_promise(ASAP))
    write_pointer(tr, layout, tenant, pointer,
                  PointerRecord(PARKED, None, 0, pointer.last_active))
    return True


def list_pauses(tr: ReadView, layout: Layout) -> list[tuple[str, str]]:
    """(kind, name) of every pause."""
    prefix = layout.flow_prefix
    out = []
    for kind in KINDS:
        begin = layout.pause(kind, "")
        end = begin[:-2] + b"\xff"
        for key, _ in tr.get_range(begin, end, limit=LIST_LIMIT):
            out.append((kind, str(unpack(key, len(prefix))[1])))
    return out


def hold_taken(
    tr: Transaction, layout: Layout, jobs: list[LeasedJob], paused: frozenset[str]
) -> list[LeasedJob]:
    """In the dequeue's own transaction, before it commits: set aside the jobs just leased
    whose topic is paused (the pause key read with a regular read, so a concurrent resume
    conflicts), as if never leased. A set-aside job is scheduled at ``PARKED`` in its zone
    (so the zone parks when nothing else is due, and lookups and cancel work as usual) and
    listed under ``held/{topic}`` for ``release_held``. Returns the jobs to run."""
    still = {t for t in {job.record.topic for job in jobs} & paused
             if tr.get(layout.pause("topic", t)) is not None}
    if not still:
        return jobs
    kept = []
    for job in jobs:
        if job.record.topic not in still:
            kept.append(job)
            continue
        job_id = job.record.job_id
        record = undo_lease(tr, layout.zone(job.tenant), job_id, PARKED)
        tr.set(layout.held(record.topic, job.tenant, job_id), b"")
    return kept


def release_held(tr: Transaction, layout: Layout, topic: str, now: int, limit: int) -> int:
    """Put up to ``limit`` set-aside jobs of ``topic`` back in their ready place (their FIFO
    position kept) and wake their zones. Returns how many entries were handled."""
    begin = layout.held_prefix + pack_str(topic)
    rows = tr.get_range(begin, begin + b"\xff", limit=limit)
    for key, _ in rows:
        tr.clear(key)
        tenant, job_id = (str(x) for x in unpack(key, len(begin)))
        zone = layout.zone(tenant)
        raw = tr.get(zone.item(job_id))
        if raw is None:
            continue  # cancelled while set aside
        record = JobRecord.decode(job_id, raw)
        if record.state != "s" or record.at != PARKED:
            continue
        tr.clear(zone.scheduled_key(PARKED, job_id))
        record.state, record.at = "r", record.seq
        tr.set(zone.ready_key(record.priority, record.seq, job_id), b"")
        tr.set(zone.item(job_id), record.encode())
        touch_pointer(tr, layout, tenant, now, now, 0)
    return len(rows)


def set_weight(tr: Transaction, layout: Layout, tenant: str, weight: float) -> None:
    """A tenant's share under contention (the default, 1, is stored as no key at all: a queue
    that weighs no tenant keeps the scanner's unweighted path)."""
    if weight == 1:
        tr.clear(layout.weight(tenant))
    else:
        tr.set(layout.weight(tenant), repr(float(weight)).encode())


def list_weights(tr: ReadView, layout: Layout) -> dict[str, float]:
    """The tenants whose weight is not 1."""
    prefix = layout.flow_prefix
    begin = layout.weight("")
    rows = tr.get_range(begin, begin[:-2] + b"\xff", limit=LIST_LIMIT)
    return {str(unpack(key, len(prefix))[1]): float(raw) for key, raw in rows}
