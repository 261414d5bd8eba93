"""What happens to a leased job after its handler ran (DESIGN.md §4, transactions 5-7).

Every function checks the lease token first: a consumer whose lease expired (and whose job
another consumer may have taken) changes nothing. Outcomes of many jobs settle in one
transaction (``settle_many``), which is how completions are batched.
"""

from __future__ import annotations

from collections.abc import Callable

from quick_queue.core import history
from quick_queue.core.pointers import touch_pointer
from quick_queue.core.records import (
    Stats,
    bury,
    bury_unreadable,
    clear_index,
    flush_stats,
    load_record,
)
from quick_queue.errors import InvalidArgument, UnreadableRecord
from quick_queue.keys import Layout, Zone
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import JobRecord
from quick_queue.outcomes import FinalState, LeaseLoss, Outcome


def _leased(tr: Transaction, layout: Layout, tenant: str, job_id: str,
            token: str) -> JobRecord | None:
    record = load_record(tr, layout.zone(tenant), job_id)
    if record is None or record.state != "l" or record.token != token:
        return None
    return record


def settle(
    tr: Transaction, layout: Layout, outcome: Outcome, now: int, slack: int, max_snoozes: int,
    stats: Stats, *, prechecked: bool = False, prune: bool = True,
) -> bool:
    """Apply one outcome; False when the token is stale (nothing changed). An outcome that
    keeps its result (``outcome.kept``) and ends the job also writes its history entry, and
    (``prune``) removes a few expired ones."""
    if outcome.kind == "done" and outcome.lease_at and not prechecked:
        # Fast path: the leased index entry holds the token, so a completion whose lease is
        # intact needs no record decode. Any mismatch falls through to the full check.
        zone = layout.zone(outcome.tenant)
        leased_key = zone.leased_key(outcome.lease_at, outcome.job_id)
        if tr.get(leased_key) == outcome.token.encode():
            tr.clear(leased_key)
            tr.clear(zone.item(outcome.job_id))
            if outcome.kept is not None:
                _keep_completed(tr, layout, outcome, now, prune=prune)
            return True
    record = _leased(tr, layout, outcome.tenant, outcome.job_id, outcome.token)
    if record is None:
        return False
    zone = layout.zone(outcome.tenant)
    clear_index(tr, zone, record)
    if not _ends(tr, zone, record, outcome, now, max_snoozes, stats):
        _reschedule(tr, layout, zone, record, outcome, now, slack)
    elif outcome.kept is not None:
        state = history.final_state(outcome.kind, buried=record.state == "d")
        if state is not None:
            error = record.reason if record.state == "d" else record.error
            history.write(tr, layout, outcome.tenant, outcome.job_id, outcome.kept, state, now,
                          error)
            if prune:
                history.prune_for(tr, layout, now, 1)
    return True


def _keep_completed(tr: Transaction, layout: Layout, outcome: Outcome, now: int, *,
                    prune: bool) -> None:
    kept = outcome.kept
    assert kept is not None
    history.write(tr, layout, outcome.tenant, outcome.job_id, kept, FinalState.COMPLETED, now,
                  kept.error)
    if prune:
        history.prune_for(tr, layout, now, 1)


def _ends(
    tr: Transaction, zone: Zone, record: JobRecord, outcome: Outcome, now: int,
    max_snoozes: int, stats: Stats,
) -> bool:
    """Count the outcome and apply it if it ends the record (deleted or buried): True then;
    False when the record goes back to ready or scheduled (``_reschedule``)."""
    kind = outcome.kind

    def count(name: str) -> None:
        stats[(record.topic, name)] = stats.get((record.topic, name), 0) + 1

    if kind == "done":
        tr.clear(zone.item(record.job_id))
        return True
    if kind == "discard":
        count("discarded")
        bury(tr, zone, record, now, "discarded", outcome.reason, stats)
        return True
    if kind == "dead":
        bury(tr, zone, record, now, outcome.dead_kind or "failed", outcome.reason, stats)
        return True
    if kind == "retry":
        count("failed")
        record.error = outcome.reason
        if record.attempt > record.resolve_max_retries(outcome.max_retries):
            bury(tr, zone, record, now, "failed",
                 f"failed {record.attempt} times; last error: {outcome.reason}", stats)
            return True
        count("retried")
        return False
    if kind == "snooze":
        count("snoozed")
        record.attempt -= 1  # a snooze spends no retry
        record.snoozes += 1
        if record.snoozes > max_snoozes:
            bury(tr, zone, record, now, "snoozed_out",
                 f"snoozed more than {max_snoozes} times", stats)
            return True
        return False
    if kind == "release":
        record.attempt -= 1  # never ran to an end: no attempt spent
        return False
    raise InvalidArgument(f"unknown outcome kind {kind!r}; see quick_queue.outcomes")


def _reschedule(
    tr: Transaction, layout: Layout, zone: Zone, record: JobRecord, outcome: Outcome, now: int,
    slack: int,
) -> None:
    """Back to ready (due now; a released job keeps its FIFO place) or scheduled."""
    release = outcome.kind == "release"
    record.token = None
    due = now if release else outcome.at
    if due <= now:
        record.state, record.at = "r", record.seq if release else due
        if not release:
            record.seq = due
    else:
        record.state, record.at, record.seq = "s", due, due
    tr.set(zone.index_key(record.state, record.priority, record.at, record.job_id), b"")
    tr.set(zone.item(record.job_id), record.encode())
    touch_pointer(tr, layout, outcome.tenant, record.at if record.state == "s" else now, now,
                  slack)


def settle_many(
    tr: Transaction, layout: Layout, outcomes: list[Outcome], now: int, slack: int,
    max_snoozes: int, on_kept: Callable[[Transaction], None] | None = None,
) -> list[bool]:
    """Apply a batch of outcomes in ``tr``; whether each was applied. ``on_kept(tr)`` is
    called once if the batch kept any result (the consumer passes ``db.notify_change``, so
    ``queue.result`` waiters wake on this commit on every engine)."""
    stats: Stats = {}
    applied = []
    # The fast path of every completion at once: one read of all their leased entries.
    fast = [o for o in outcomes if o.kind == "done" and o.lease_at]
    keys = [layout.zone(o.tenant).leased_key(o.lease_at, o.job_id) for o in fast]
    intact = {
        id(o): key
        for o, key, value in zip(fast, keys, tr.get_many(keys), strict=True)
        if value == o.token.encode()
    }
    # A job met again in the batch may have been settled by its earlier outcome, which the
    # batched read above predates: it takes settle's own (read-your-writes) checks instead.
    seen: set[tuple[str, str]] = set()
    kept = 0  # history entries written: they pay for pruning as many expired ones
    for outcome in outcomes:
        ident = (outcome.tenant, outcome.job_id)
        repeat = ident in seen
        seen.add(ident)
        leased_key = None if repeat else intact.get(id(outcome))
        if leased_key is not None:
            tr.clear(leased_key)
            tr.clear(layout.zone(outcome.tenant).item(outcome.job_id))
            if outcome.kept is not None:
                _keep_completed(tr, layout, outcome, now, prune=False)
            ok = True
        else:
            ok = _settle_isolated(tr, layout, outcome, now, slack, max_snoozes, stats,
                                  prechecked=not repeat)
        applied.append(ok)
        kept += ok and outcome.kept is not None
        if ok and outcome.kind == "done":
            key = (outcome.topic or "?", "completed")
            stats[key] = stats.get(key, 0) + 1
    stale = len(applied) - sum(applied)
    if stale:
        stats[("*", "stale")] = stale
    flush_stats(tr, layout, stats)
    if kept:  # nothing at all unless a job kept its result
        history.prune_for(tr, layout, now, kept)
        if on_kept is not None:
            on_kept(tr)
    return applied


def _settle_isolated(
    tr: Transaction, layout: Layout, outcome: Outcome, now: int, slack: int, max_snoozes: int,
    stats: Stats, *, prechecked: bool,
) -> bool:
    """``settle`` for one outcome of a batch: a record that cannot be decoded fails only its
    own outcome (it is buried as "unreadable", the outcome reported not applied), never the
    batch. ``settle`` reads the record before it writes anything, so nothing half-applied
    stays behind."""
    try:
        return settle(tr, layout, outcome, now, slack, max_snoozes, stats, prechecked=prechecked,
                      prune=False)
    except UnreadableRecord as error:
        zone = layout.zone(outcome.tenant)
        if outcome.lease_at:
            tr.clear(zone.leased_key(outcome.lease_at, outcome.job_id))
        bury_unreadable(tr, zone, outcome.job_id, error.raw, now, error.reason, stats)
        return False


def extend_leases(
    tr: Transaction, layout: Layout, leases: list[tuple[str, str, str]], now: int,
    item_lease: int,
) -> list[bool]:
    """Push the expiry of each (tenant, job_id, token) lease; False where the lease is lost."""
    expiry = now + item_lease
    kept = []
    for tenant, job_id, token in leases:
        try:
            record = _leased(tr, layout, tenant, job_id, token)
        except UnreadableRecord:
            record = None  # lost: whoever settles or dequeues it next buries it
        if record is None:
            kept.append(False)
            continue
        zone = layout.zone(tenant)
        if expiry > record.at:
            tr.clear(zone.leased_key(record.at, job_id))
            record.at = expiry
            tr.set(zone.leased_key(expiry, job_id), token.encode())
            tr.set(zone.item(job_id), record.encode())
        kept.append(True)
    return kept


def lease_loss(
    tr: ReadView, layout: Layout, tenant: str, job_id: str, token: str
) -> LeaseLoss:
    """Why ``token``'s lease on the job is gone (``HELD`` if it is not): a keeper whose
    extension failed, or a settler whose outcome was stale, reports this reason (a cancelled
    job says "cancelled", not "lease lost")."""
    zone = layout.zone(tenant)
    raw, dead = tr.get_many([zone.item(job_id), zone.dead_key(job_id)])
    if raw is None:
        return LeaseLoss.DEAD if dead is not None else LeaseLoss.CANCELLED
    try:
        record = JobRecord.decode(job_id, raw)
    except UnreadableRecord:
        return LeaseLoss.UNREADABLE
    if record.state == "l" and record.token == token:
        return LeaseLoss.HELD
    return LeaseLoss.TAKEN


def still_leased(tr: Transaction, layout: Layout, tenant: str, job_id: str, token: str) -> bool:
    try:
        return _leased(tr, layout, tenant, job_id, token) is not None
    except UnreadableRecord:
        return False
