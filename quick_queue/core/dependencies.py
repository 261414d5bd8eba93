"""Jobs that wait for other jobs (issue 13): ``enqueue(..., after=[job_id, ...])``.

A *child* enqueued after *parents* that are still live is written as a normal job, scheduled
at ``PARKED`` (9999-12-31, like a job of a paused topic: lookups, ``cancel`` and the zone's
pointer work as usual, and it is never due), plus:

    dw/{tenant}/{child}                         what it waits for: JSON {"p": [[tenant, id],
                                                ...] parents still live, "due": its own due
                                                time (us), "on": the rule if a parent dies}
    de/{parent tenant}/{parent}/{tenant}/{child}  ''  one edge per parent and child
    dh/{parent tenant}/{parent}                 ''  the parent has children (a point read)
    flow/deps/on                                ''  the queue has used ``after=`` (never
                                                cleared; read by every settle, see below)

When a parent ends, the settle that ends it (``settled``, called by ``core.settle``) takes it
off its children's lists in the same transaction; the child whose list empties is released:
due at its own due time, in its FIFO place as of its enqueue. Every step reads the child's
``dw`` record with a regular read, so two parents of one child settling at once conflict and
the child is released exactly once.

The rule when a parent dies (dead letter: failed, discarded, dead): ``on_parent_failure="dead"``
(the default) buries the child as a dead letter of kind ``parent_failed`` whose reason names the
parent (and, in turn, its own children); ``"run"`` counts the dead parent as done. A parent that
no longer exists when the child is enqueued (completed, cancelled, purged, or never existed)
counts as completed; one already dead applies the rule at once. Parents may be in other
tenants (``(tenant, job_id)`` pairs). A cycle cannot be made: a parent must exist before its
child, and an id that does not exist yet counts as completed.

Hot path: a queue that never used ``after=`` pays one point read per settle transaction (of
``flow/deps/on``, not per job) and nothing on enqueue. The read is a regular one so that a
settle racing the queue's first ``after=`` conflicts with it instead of missing the new edge;
once the key exists it never changes, so it never conflicts again. Queues using dependencies
pay one more batched point read (``dh``) per settle and the edges of the jobs that have some.

``enqueue_many`` items take ``after=`` too (``enqueue_many_after``): the same as enqueueing
them one by one in one transaction, and a parent may be an earlier item of the batch (named by
its index: the producer turns it into that item's id, made before the transaction).

A parent that ends outside a settle (cancelled, or buried because its lease ran out on every
attempt) is found by ``reconcile``, which the workers run over the waiting children now and
then (``quick_queue.flow.view``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quick_queue.core.enqueue import NewJob, enqueue_many, may_write_blind, write_job
from quick_queue.core.pauses import PARKED
from quick_queue.core.pointers import touch_pointer
from quick_queue.core.records import Stats, bury, clear_index, flush_stats
from quick_queue.errors import UnreadableRecord
from quick_queue.keys import Layout, pack, pack_str, unpack
from quick_queue.kv.api import Transaction
from quick_queue.models import JobRecord
from quick_queue.outcomes import Outcome

RULES = ("dead", "run")
EDGES_PER_TRANSACTION = 2000  # children one transaction releases or buries, at most
DEAD_KIND = "parent_failed"
Ref = tuple[str, str]  # (tenant, job id)
Wait = tuple[list[Ref], str]  # the parents a job waits for, and its on_parent_failure rule


_DEPS_ON = pack(("deps", "on"))


def flag_key(layout: Layout) -> bytes:
    return layout.flow_prefix + _DEPS_ON


def waiting_prefix(layout: Layout) -> bytes:
    return layout.root + pack(("dw",))


def wait_key(layout: Layout, child: Ref) -> bytes:
    return waiting_prefix(layout) + pack_str(child[0]) + pack_str(child[1])


def edges_of(layout: Layout, parent: Ref) -> bytes:
    return layout.root + pack(("de",)) + pack_str(parent[0]) + pack_str(parent[1])


def has_key(layout: Layout, parent: Ref) -> bytes:
    return layout.root + pack(("dh",)) + pack_str(parent[0]) + pack_str(parent[1])


def _state(tr: Transaction, layout: Layout, refs: list[Ref]) -> list[tuple[str, str]]:
    """("live" | "dead" | "done", why) of each job (regular reads: a settle that ends one
    conflicts with the caller)."""
    keys = []
    for tenant, job_id in refs:
        zone = layout.zone(tenant)
        keys += [zone.item(job_id), zone.dead_key(job_id)]
    raws = tr.get_many(keys)
    out = []
    for (_, job_id), live, dead in zip(refs, raws[::2], raws[1::2], strict=True):
        if live is not None:
            out.append(("live", ""))
        elif dead is not None:
            try:
                record = JobRecord.decode(job_id, dead)
                out.append(("dead", f"{record.dead_kind}: {record.reason}"))
            except UnreadableRecord:
                out.append(("dead", "its dead letter cannot be read"))
        else:
            out.append(("done", ""))
    return out


def enqueue_after(
    tr: Transaction, layout: Layout, job: NewJob, parents: list[Ref], rule: str, now: int,
    slack: int,
) -> str:
    """``enqueue`` of a job that waits for ``parents``; idempotent per job id like it."""
    return enqueue_many_after(tr, layout, [job], {0: (parents, rule)}, now, slack)[0]


def enqueue_many_after(
    tr: Transaction, layout: Layout, jobs: list[NewJob], waits: Mapping[int, Wait], now: int,
    slack: int,
) -> list[str]:
    """``enqueue_many`` where the jobs at the indexes of ``waits`` wait for other jobs: the
    same as enqueueing the jobs one by one in their order (a parent written earlier in the
    batch is live; a job id twice in the batch is written once, as its first item says), in
    four batched reads whatever the batch's size, not three per job (on FoundationDB each
    read is a round trip)."""
    first: dict[Ref, int] = {}
    for i, job in enumerate(jobs):
        first.setdefault((job.tenant, job.job_id), i)
    kept = [i for i, job in enumerate(jobs) if first[(job.tenant, job.job_id)] == i]
    children = [i for i in kept if i in waits]
    # Before anything is written: every parent's state, and which children are there already
    # (a keyed job, or a retry after 1021); regular reads, see _state.
    checked = [(jobs[i].tenant, jobs[i].job_id) for i in children
               if not may_write_blind(tr, jobs[i])]
    refs = list(dict.fromkeys(checked + [p for i in children for p in waits[i][0]]))
    states = dict(zip(refs, _state(tr, layout, refs), strict=True))
    there = {ref for ref in checked if states[ref][0] != "done"}
    plain = [jobs[i] for i in kept if i not in waits]
    if plain:
        enqueue_many(tr, layout, plain, now, slack)
    tenants = list(dict.fromkeys(jobs[i].tenant for i in children))
    batch = _Batch(dict(zip(tenants, tr.get_many([layout.marker(t) for t in tenants]),
                            strict=True)))
    for i in kept:
        ref = (jobs[i].tenant, jobs[i].job_id)
        if i not in waits:
            if ref in states and states[ref][0] == "done":
                states[ref] = ("live", "")  # written above: live for the jobs after it
        elif ref not in there:
            parents, rule = waits[i]
            states[ref] = _link(tr, layout, jobs[i], [(p, states[p]) for p in parents], rule,
                                batch, now, slack)
    tr.set_many(batch.pairs)
    flush_stats(tr, layout, batch.stats)
    if batch.edges and tr.snapshot.get(flag_key(layout)) is None:
        tr.set(flag_key(layout), b"")  # the first use: settles read it from now on
    return [job.job_id for job in jobs]


@dataclass(slots=True)
class _Batch:
    """What the jobs of one ``enqueue_many_after`` share: the zones' markers (as read and
    written), the counts, the writes for one ``set_many``, the edge prefix of each parent
    (its ``dh`` key written) and the wait records made (a fan-out's children share one)."""

    markers: dict[str, bytes | None]
    stats: Stats = field(default_factory=dict)
    pairs: list[tuple[bytes, bytes]] = field(default_factory=list)
    edges: dict[Ref, bytes] = field(default_factory=dict)
    records: dict[tuple[tuple[Ref, ...], int, str], bytes] = field(default_factory=dict)


def _link(
    tr: Transaction, layout: Layout, job: NewJob, parents: list[tuple[Ref, tuple[str, str]]],
    rule: str, batch: _Batch, now: int, slack: int,
) -> tuple[str, str]:
    """Write ``job`` given its parents' states (see the module docstring); returns its own
    state for the jobs of the batch that wait for it."""
    dead = [(parent, why) for parent, (state, why) in parents if state == "dead"]
    live = tuple(parent for parent, (state, _) in parents if state == "live")
    markers, tenant = batch.markers, job.tenant
    if dead and rule == "dead":
        # written at once, not into pairs: _bury_child reads it back
        markers[tenant] = write_job(tr, layout, _parked(job), now, slack, markers[tenant],
                                     batch.stats)
        _bury_child(tr, layout, (tenant, job.job_id), dead[0][0], dead[0][1], now,
                    batch.stats)
        return "dead", f"{DEAD_KIND}: {_buried_reason(dead[0][0], dead[0][1])}"
    pairs = batch.pairs
    if not live:
        markers[tenant] = write_job(tr, layout, job, now, slack, markers[tenant],
                                     batch.stats, pairs)
        return "live", ""
    markers[tenant] = write_job(tr, layout, _parked(job), now, slack, markers[tenant],
                                 batch.stats, pairs)
    record = batch.records.get((live, job.due, rule))
    if record is None:
        waiting = {"p": [list(p) for p in live], "due": job.due, "on": rule}
        record = batch.records[(live, job.due, rule)] = json.dumps(waiting).encode()
    child = pack_str(tenant) + pack_str(job.job_id)
    pairs.append((waiting_prefix(layout) + child, record))
    for parent in live:
        prefix = batch.edges.get(parent)
        if prefix is None:
            prefix = batch.edges[parent] = edges_of(layout, parent)
            pairs.append((has_key(layout, parent), b""))
        pairs.append((prefix + child, b""))
    return "live", ""


def _parked(job: NewJob) -> NewJob:
    """``job`` due at ``PARKED``, built directly (``dataclasses.replace``: 2.1 µs, this 0.34;
    with the shared wait record and edge prefixes of ``_Batch``, a fan-out of 1,000 children
    in one enqueue_many went from 289k to 222k instructions a child, callgrind)."""
    return NewJob(job.tenant, job.job_id, job.topic, job.payload, job.priority,
                  job.max_retries, PARKED, job.key, job.trace, job.fresh)


_UNREAD: Any = object()


def settled(
    tr: Transaction, layout: Layout, outcomes: list[Outcome], applied: list[bool], now: int,
    slack: int, flag: bytes | None = _UNREAD,
) -> None:
    """The hook of ``core.settle.settle_many``, after its outcomes are applied: release or
    bury the children of the jobs that ended. See the module docstring for what it costs.
    ``flag``: the value of ``flag_key`` when the caller read it (a regular read) in this
    transaction already, with its other reads (a settle batch: one statement less)."""
    if flag is _UNREAD:
        flag = tr.get(flag_key(layout))  # regular: see the module docstring
    if flag is None:
        return
    # ``applied`` may be shorter than ``outcomes`` (a batch cut by its byte budget)
    refs = list(dict.fromkeys(
        (o.tenant, o.job_id) for o, ok in zip(outcomes, applied, strict=False) if ok))
    marked = [ref for ref, raw in zip(refs, tr.get_many([has_key(layout, r) for r in refs]),
                                      strict=True) if raw is not None]
    if marked:
        ended(tr, layout, marked, now, slack)


def ended(tr: Transaction, layout: Layout, parents: list[Ref], now: int, slack: int,
          budget: int = EDGES_PER_TRANSACTION) -> None:
    """Settle the children of ``parents`` whose jobs are gone (completed, or dead): a parent
    still live (retried, snoozed) is left alone. A child buried for a dead parent is itself a
    dead parent for its own children (the worklist). At most ``budget`` edges are handled, so
    a huge fan-out cannot outgrow one transaction: a parent whose edges are left keeps its
    ``dh`` key, and ``reconcile`` goes on with it."""
    stats: Stats = {}
    work = [(p, s, why) for p, (s, why) in zip(parents, _state(tr, layout, parents),
                                                 strict=True) if s != "live"]
    while work and budget > 0:
        parent, state, why = work.pop()
        prefix = edges_of(layout, parent)
        rows = tr.get_range(prefix, prefix + b"\xff", limit=budget + 1)
        if len(rows) <= budget:
            tr.clear(has_key(layout, parent))
        for key, _ in rows[:budget]:
            budget -= 1
            tr.clear(key)
            tenant, job_id = (str(x) for x in unpack(key, len(prefix)))
            if _drop_parent(tr, layout, (tenant, job_id), parent, state, why, now, slack,
                            stats):
                work.append(((tenant, job_id), "dead", f"{DEAD_KIND}: parent {parent[0]}/"
                                                        f"{parent[1]} died"))
    flush_stats(tr, layout, stats)


def _drop_parent(
    tr: Transaction, layout: Layout, child: Ref, parent: Ref, state: str, why: str, now: int,
    slack: int, stats: Stats,
) -> bool:
    """Take ``parent`` off ``child``'s list; release it when the list empties. True when the
    child was buried instead (its parent died and its rule is "dead")."""
    key = wait_key(layout, child)
    raw = tr.get(key)  # regular: two parents ending at once conflict here
    if raw is None:
        return False  # released, buried or cancelled already
    waiting: dict[str, Any] = json.loads(raw)
    if list(parent) not in waiting["p"]:
        return False
    if state == "dead" and waiting["on"] == "dead":
        tr.clear(key)
        return _bury_child(tr, layout, child, parent, why, now, stats)
    waiting["p"].remove(list(parent))
    if waiting["p"]:
        tr.set(key, json.dumps(waiting).encode())
        return False
    tr.clear(key)
    _release(tr, layout, child, int(waiting["due"]), now, slack)
    return False


def _waiting_record(tr: Transaction, layout: Layout, child: Ref) -> JobRecord | None:
    raw = tr.get(layout.zone(child[0]).item(child[1]))
    if raw is None:
        return None  # cancelled while it waited
    record = JobRecord.decode(child[1], raw)
    return record if record.state == "s" and record.at == PARKED else None


def _release(tr: Transaction, layout: Layout, child: Ref, due: int, now: int,
             slack: int) -> None:
    record = _waiting_record(tr, layout, child)
    if record is None:
        return
    zone = layout.zone(child[0])
    clear_index(tr, zone, record)
    # its place in line is its enqueue's: it goes ahead of jobs enqueued after it
    record.state, record.at, record.seq = ("r" if due <= now else "s"), due, due
    tr.set(zone.index_key(record.state, record.priority, due, child[1]), b"")
    tr.set(zone.item(child[1]), record.encode())
    touch_pointer(tr, layout, child[0], max(due, now), now, slack)


def _bury_child(tr: Transaction, layout: Layout, child: Ref, parent: Ref, why: str,
                now: int, stats: Stats) -> bool:
    record = _waiting_record(tr, layout, child)
    if record is None:
        return False
    zone = layout.zone(child[0])
    clear_index(tr, zone, record)
    bury(tr, zone, record, now, DEAD_KIND, _buried_reason(parent, why), stats)
    return True


def _buried_reason(parent: Ref, why: str) -> str:
    return f"parent job {parent[0]}/{parent[1]} died ({why}); this job waited for it"


def waiting_for(tr: Transaction, layout: Layout, child: Ref) -> list[Ref] | None:
    """The parents ``child`` still waits for (None: it waits for nothing)."""
    raw = tr.snapshot.get(wait_key(layout, child))
    return None if raw is None else [(str(t), str(j)) for t, j in json.loads(raw)["p"]]


def reconcile(tr: Transaction, layout: Layout, after: bytes, limit: int, now: int,
              slack: int) -> bytes | None:
    """Look at up to ``limit`` waiting children after key ``after``: the parents of theirs
    that ended outside a settle are ended now. Returns the key to go on from (None: done)."""
    begin = waiting_prefix(layout)
    rows = tr.snapshot.get_range(max(after, begin), begin + b"\xff", limit=limit)
    parents: dict[Ref, None] = {}
    for key, raw in rows:
        if key == after:
            continue
        for tenant, job_id in json.loads(raw)["p"]:
            parents[(str(tenant), str(job_id))] = None
    if parents:
        ended(tr, layout, list(parents), now, slack)
    return rows[-1][0] if len(rows) >= limit else None
