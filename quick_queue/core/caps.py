"""Concurrency caps (issue 13): at most N attempts of a topic run at once across every worker.

A cap is ``flow/cap/{topic}``; each running attempt of a capped topic holds a *slot*,
``slots/{topic}/{i}`` = [tenant, job_id, token], taken in the dequeue's own transaction. A slot
is free when the job it names no longer holds that lease (completed, failed, or its lease ran
out): slots are freed lazily by the next taker, so settling, extending and a SIGKILLed worker
need no code of their own, and a dead worker's slots come back when its leases expire. The slot
range is read with a regular read, so two workers filling the last slot conflict and one of
them fails its visit (a lost race, as for a zone). The job records are read with snapshot
reads: a completion that races only makes a slot look taken a moment longer.

A job that finds no free slot is handed back in the same transaction, as if never leased (no
attempt spent), and scheduled ``retry_us`` later, so its zone is not scanned over and over.
"""

from __future__ import annotations

import json

from quick_queue.core.pointers import touch_pointer
from quick_queue.keys import Layout, pack_int, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import JobRecord, LeasedJob


def set_cap(tr: Transaction, layout: Layout, topic: str, cap: int | None) -> None:
    if cap is None:
        tr.clear(layout.cap(topic))
    else:
        tr.set(layout.cap(topic), str(cap).encode())


def _alive(tr: Transaction, layout: Layout, topic: str, now: int) -> set[int]:
    """The slots of ``topic`` whose job still holds the lease they name."""
    prefix = layout.slots(topic)
    rows = tr.get_range(prefix, prefix + b"\xff")  # regular: racing takers conflict
    taken = [(int(unpack(key, len(prefix))[0]), json.loads(raw)) for key, raw in rows]
    raws = tr.snapshot.get_many([layout.zone(t).item(j) for _, (t, j, _) in taken])
    alive = set()
    for (index, (_, job_id, token)), raw in zip(taken, raws, strict=True):
        if raw is None:
            continue
        record = JobRecord.decode(job_id, raw)
        if record.state == "l" and record.token == token and record.at > now:
            alive.add(index)
    return alive


def hand_back(tr: Transaction, layout: Layout, job: LeasedJob, at: int, now: int) -> None:
    zone = layout.zone(job.tenant)
    job_id = job.record.job_id
    record = JobRecord.decode(job_id, tr.get(zone.item(job_id)) or b"")
    tr.clear(zone.leased_key(record.at, job_id))
    record.state, record.at, record.token = "s", at, None
    record.attempt -= 1  # the lease is undone in the same transaction: nothing spent
    tr.set(zone.scheduled_key(at, job_id), b"")
    tr.set(zone.item(job_id), record.encode())
    # the dequeue already vested the zone's pointer, perhaps at the next lease expiry: make
    # sure the zone is looked at again when this job wants its slot
    touch_pointer(tr, layout, job.tenant, at, now, 0)


def take_slots(
    tr: Transaction, layout: Layout, jobs: list[LeasedJob], capped: frozenset[str], now: int,
    retry_us: int,
) -> list[LeasedJob]:
    """Give each just-leased job of a capped topic a free slot, or hand it back; returns the
    jobs to run."""
    topics = {job.record.topic for job in jobs} & capped
    back: set[str] = set()
    for topic in sorted(topics):
        raw_cap = tr.get(layout.cap(topic))
        if raw_cap is None:  # uncapped meanwhile
            continue
        mine = [job for job in jobs if job.record.topic == topic]
        alive = _alive(tr, layout, topic, now)
        cap = int(raw_cap)
        free = [i for i in range(cap + len(alive)) if i not in alive][: max(0, cap - len(alive))]
        for job in mine:
            if free:
                index = free.pop(0)
                value = json.dumps([job.tenant, job.record.job_id, job.token]).encode()
                tr.set(layout.slots(topic) + pack_int(index), value)
            else:
                hand_back(tr, layout, job, now + retry_us, now)
                back.add(job.record.job_id)
    return [job for job in jobs if job.record.job_id not in back]



def list_caps(tr: ReadView, layout: Layout) -> dict[str, int]:
    prefix = layout.flow_prefix
    begin = layout.cap("")
    rows = tr.get_range(begin, begin[:-2] + b"\xff", limit=10_000)
    return {str(unpack(key, len(prefix))[1]): int(raw) for key, raw in rows}
