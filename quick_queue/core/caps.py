"""Concurrency caps (issue 13): at most N attempts of a topic, or of a tenant, run at once
across every worker.

Three settings, in the ``flow/`` range every scanner reads: ``flow/cap/{topic}`` (the queue's
setting, ``queue.set_max_running``), ``flow/dcap/{topic}`` (declared by a handler,
``@job(max_running=N)``, written by each worker that runs it when it starts) and
``flow/tcap/{tenant}`` (``queue.set_tenant_max_running``). For a topic the queue's setting
wins over a declaration when both exist: an operator can loosen or tighten a cap without a
deploy, and removing the setting gives the handler's declaration back.

Each running attempt of a capped topic holds a *slot*, ``slots/{topic}/{i}`` = [tenant,
job_id, token] (a capped tenant's, ``tslots/{tenant}/{i}``), taken in the dequeue's own
transaction; a job of a capped topic and a capped tenant needs one of each. A slot is free when
the job it names no longer holds that lease (completed, failed, or its expired lease was taken
back by the visit that promotes it): slots are freed lazily by the next taker, so settling,
extending and a SIGKILLed worker need no code of their own, and a dead worker's slots come back
when its leases expire and its zone is next visited. The slot range is
read with a regular read, so two workers filling the last slot conflict and one of them fails
its visit (a lost race, as for a zone). The job records are read with snapshot reads: a
completion that races only makes a slot look taken a moment longer.

A job that finds no free slot is handed back in the same transaction, as if never leased (no
attempt spent), and scheduled ``retry_us`` later, so its zone is not scanned over and over. Its
scheduled entry is marked ``KEEP_PLACE``: when promoted it takes its old place in line again
(its record's ``seq``), so waiting for a slot does not send it behind the jobs enqueued after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from quick_queue.core.dequeue import KEEP_PLACE
from quick_queue.core.pointers import touch_pointer
from quick_queue.core.records import undo_lease
from quick_queue.keys import Layout, pack, pack_int, pack_str, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import JobRecord, LeasedJob

QUEUE, DECLARED, TENANT = "cap", "dcap", "tcap"  # kinds of cap keys under flow/


@dataclass(frozen=True)
class Targets:
    """The topics and tenants a worker knows to be capped (or rate-limited): what the
    scanner passes to ``take_slots`` and ``rates.take_turns``; false when there are none, so
    a queue using neither pays one truth test per visit."""

    topics: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.topics or self.tenants)


def key(layout: Layout, kind: str, name: str) -> bytes:
    """``flow/{kind}/{name}`` (``kind`` is QUEUE, DECLARED or TENANT)."""
    return layout.flow_prefix + pack((kind, name))


def tenant_slots(layout: Layout, tenant: str) -> bytes:
    return layout.root + pack(("fts",)) + pack_str(tenant)


def set_cap(tr: Transaction, layout: Layout, topic: str, cap: int | None,
            kind: str = QUEUE) -> None:
    if cap is None:
        tr.clear(key(layout, kind, topic))
    else:
        tr.set(key(layout, kind, topic), str(cap).encode())


def _alive(tr: Transaction, layout: Layout, prefix: bytes) -> set[int]:
    """The slots under ``prefix`` whose job still holds the lease they name."""
    rows = tr.get_range(prefix, prefix + b"\xff")  # regular: racing takers conflict
    taken = [(int(unpack(k, len(prefix))[0]), json.loads(raw)) for k, raw in rows]
    raws = tr.snapshot.get_many([layout.zone(t).item(j) for _, (t, j, _) in taken])
    alive = set()
    for (index, (_, job_id, token)), raw in zip(taken, raws, strict=True):
        if raw is None:
            continue
        record = JobRecord.decode(job_id, raw)
        # Held while the record is leased with the slot's token, whatever its expiry says
        # (an extension may move the lease without rewriting the record): a dead worker's
        # lease is ended by the visit that promotes it once expired, as its zone's pointer
        # is due then, and that frees the slot.
        if record.state == "l" and record.token == token:
            alive.add(index)
    return alive


def _free(tr: Transaction, layout: Layout, prefix: bytes, cap: int) -> list[int]:
    alive = _alive(tr, layout, prefix)
    return [i for i in range(cap + len(alive)) if i not in alive][: max(0, cap - len(alive))]


def hand_back(tr: Transaction, layout: Layout, job: LeasedJob, at: int, now: int) -> None:
    # marked: when promoted, it goes back to its old place in line (record.seq), not the back
    undo_lease(tr, layout.zone(job.tenant), job.record.job_id, at, KEEP_PLACE)
    # the dequeue already vested the zone's pointer, perhaps at the next lease expiry: make
    # sure the zone is looked at again when this job wants its slot
    touch_pointer(tr, layout, job.tenant, at, now, 0)


def topic_limit(tr: Transaction, layout: Layout, topic: str, kinds: tuple[str, str]) -> int | None:
    """The limit in force for ``topic``: the queue's setting (``kinds[0]``), else the
    handler's declaration (``kinds[1]``); regular reads, so a change conflicts."""
    setting, declared = tr.get_many([key(layout, kind, topic) for kind in kinds])
    raw = setting if setting is not None else declared
    return None if raw is None else int(raw)


def take_slots(
    tr: Transaction, layout: Layout, jobs: list[LeasedJob], capped: Targets, now: int,
    retry_us: int,
) -> list[LeasedJob]:
    """Give each just-leased job of a capped topic or tenant a free slot of each, or hand it
    back; returns the jobs to run."""
    free: dict[bytes, list[int]] = {}  # slot prefix -> free slot numbers
    for topic in sorted({job.record.topic for job in jobs} & capped.topics):
        cap = topic_limit(tr, layout, topic, (QUEUE, DECLARED))
        if cap is not None:  # else uncapped meanwhile
            free[layout.slots(topic)] = _free(tr, layout, layout.slots(topic), cap)
    for tenant in sorted({job.tenant for job in jobs} & capped.tenants):
        raw = tr.get(key(layout, TENANT, tenant))
        if raw is not None:
            prefix = tenant_slots(layout, tenant)
            free[prefix] = _free(tr, layout, prefix, int(raw))
    if not free:
        return jobs
    back: set[str] = set()
    for job in jobs:
        needs = [p for p in (layout.slots(job.record.topic), tenant_slots(layout, job.tenant))
                 if p in free]
        if not all(free[p] for p in needs):
            hand_back(tr, layout, job, now + retry_us, now)
            back.add(job.record.job_id)
            continue
        value = json.dumps([job.tenant, job.record.job_id, job.token]).encode()
        for prefix in needs:
            tr.set(prefix + pack_int(free[prefix].pop(0)), value)
    return [job for job in jobs if job.record.job_id not in back]


def list_kind(tr: ReadView, layout: Layout, kind: str) -> dict[str, int]:
    """Every ``flow/{kind}/{name}`` setting, name -> integer value."""
    begin = key(layout, kind, "")
    rows = tr.get_range(begin, begin[:-2] + b"\xff", limit=10_000)
    return {str(unpack(k, len(layout.flow_prefix))[1]): int(raw) for k, raw in rows}


def list_caps(tr: ReadView, layout: Layout) -> dict[str, int]:
    """The cap in force of every capped topic (the queue's setting, else the declared)."""
    return list_kind(tr, layout, DECLARED) | list_kind(tr, layout, QUEUE)
