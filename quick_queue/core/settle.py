"""What happens to a leased job after its handler ran (DESIGN.md §4, transactions 5-7).

Every function checks the lease token first: a consumer whose lease expired (and whose job
another consumer may have taken) changes nothing. Outcomes of many jobs settle in one
transaction (``settle_many``), which is how completions are batched.

Round trips and size (issue 14). On FoundationDB every read that waits is a network round
trip, and a transaction is refused past 10 MB (mutations and conflict ranges; under 1 MB is
advised). So a batch reads together (every completion's leased entry in one round, a range
read a visit: ``settle_reads``; then the records it needs ``READ_WINDOW`` at a time), and the
runtime gives each batch a byte ``budget``: the batch stops taking outcomes once the
transaction's approximate size reaches it, and the caller settles the rest in the next
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from quick_queue.core import dependencies, history
from quick_queue.core.leases import extend_leases as extend_leases
from quick_queue.core.leases import held_record
from quick_queue.core.pointers import touch_pointer
from quick_queue.core.records import (
    EXTENDED,
    UNREAD,
    ByteBudget,
    Stats,
    bury,
    bury_unreadable,
    clear_index,
    entry_holds,
    extension_key,
    flush_stats,
    load_record,
)
from quick_queue.core.settle_reads import READ_WINDOW as READ_WINDOW
from quick_queue.core.settle_reads import BatchReads, Intact, Markers
from quick_queue.errors import InvalidArgument, UnreadableRecord
from quick_queue.keys import Layout, Zone
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import VALUE_LIMIT, JobRecord
from quick_queue.outcomes import FinalState, Kept, LeaseLoss, Outcome, OutcomeKind

#: The byte budget the runtime gives a settle or extension batch: a transaction stops taking
#: more work once its approximate size reaches it. FoundationDB advises staying under 1 MB
#: (its limit is 10 MB); the outcome that crosses the budget adds at most about two records
#: (100 kB each at most), so a batch stays about at or below 1 MB.
BATCH_BYTES = 800_000
_ENTRY_BYTES = 512  # what an outcome adds besides its record: keys, conflict ranges, stats
_KEPT: Callable[[Outcome], Kept | None] = attrgetter("kept")
_REASON: Callable[[Outcome], str] = attrgetter("reason")
_TOPIC: Callable[[Outcome], str] = attrgetter("topic")
Tally = dict[str, int]  # applied completions a topic


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
        value = tr.get(leased_key)
        if entry_holds(value, outcome.token):
            assert value is not None
            item_key = zone.item(outcome.job_id)
            _complete_fast(tr, (leased_key, item_key, extension_key(zone, outcome.job_id))
                           if value.endswith(EXTENDED) else (leased_key, item_key))
            if outcome.kept is not None:
                _keep_completed(tr, layout, outcome, now, prune=prune)
            return True
    raw = tr.get(layout.zone(outcome.tenant).item(outcome.job_id))
    return _settle_record(tr, layout, outcome, raw, now, slack, max_snoozes, stats, prune=prune)


def _complete_fast(tr: Transaction, keys: Intact) -> None:
    """A completion whose intact lease entry was read: delete the job, its ``keys`` (its
    leased entry, its record, and its extension record if an extension moved the lease: the
    entry's value says so, no need to read the extension record)."""
    tr.clear_many(list(keys))


def _settle_record(
    tr: Transaction, layout: Layout, outcome: Outcome, raw: bytes | None, now: int, slack: int,
    max_snoozes: int, stats: Stats, *, prune: bool, markers: Markers | None = None,
    extension: bytes | None = UNREAD,
) -> bool:
    """``settle`` past its fast path, on the record's stored bytes ``raw`` (already read; its
    extension record too when ``extension`` is given)."""
    record = held_record(outcome.job_id, raw, outcome.token)
    if record is None:
        return False
    zone = layout.zone(outcome.tenant)
    clear_index(tr, zone, record, extension=extension)
    if not _ends(tr, zone, record, outcome, now, max_snoozes, stats):
        _reschedule(tr, layout, zone, record, outcome, now, slack, markers)
    elif outcome.kept is not None:
        state = history.final_state(outcome.kind, buried=record.state == "d")
        if state is not None:
            error = record.reason if record.state == "d" else record.error
            history.write(tr, layout, outcome.tenant, outcome.job_id, outcome.kept, state, now,
                          error)
            if prune:
                history.prune_for(tr, layout, now, 1)
    return True


def _completed_before(tr: Transaction, layout: Layout, outcome: Outcome) -> bool:
    """A completion whose job is gone, in a retry after a commit of unknown outcome (1021):
    the earlier attempt most likely committed it (the job is gone, and no dead letter holds
    it, just as a completion leaves it), so it counts as applied: the worker reports the job
    completed, not cancelled. Nothing is written or counted again: this only decides what is
    reported."""
    if outcome.kind is not OutcomeKind.DONE or not tr.unknown_result:
        return False
    return tr.get(layout.zone(outcome.tenant).dead_key(outcome.job_id)) is None


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
    slack: int, markers: Markers | None = None,
) -> None:
    """Back to ready (due now; a released job keeps its FIFO place) or scheduled. ``markers``:
    the zones' markers a batch already read (``touch_pointer`` then reads nothing)."""
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
    when = record.at if record.state == "s" else now
    if markers is not None and outcome.tenant in markers:
        markers[outcome.tenant] = touch_pointer(tr, layout, outcome.tenant, when, now, slack,
                                                markers[outcome.tenant])
    else:
        touch_pointer(tr, layout, outcome.tenant, when, now, slack)


def settle_many(
    tr: Transaction, layout: Layout, outcomes: list[Outcome], now: int, slack: int,
    max_snoozes: int, on_kept: Callable[[Transaction], None] | None = None, *,
    budget: int | None = None,
) -> list[bool]:
    """Apply a batch of outcomes in ``tr``; whether each was applied. ``on_kept(tr)`` is
    called once if the batch kept any result (the consumer passes ``db.notify_change``, so
    ``queue.result`` waiters wake on this commit on every engine).

    With ``budget`` (bytes), no outcome is started once the transaction's approximate size
    has reached it (the first always is): the list returned is then shorter than
    ``outcomes``, and the outcomes past its end were not looked at."""
    stats: Stats = {}
    reads = BatchReads(tr, layout, outcomes)
    completed: Tally = {}  # applied completions a topic, counted into ``stats`` at the end
    kept = 0  # history entries written: they pay for pruning as many expired ones
    applied = _all_completed(tr, outcomes, reads, budget, completed)
    if applied is None:
        applied, kept = _settle_each(tr, layout, outcomes, reads, now, slack, max_snoozes,
                                     stats, budget, completed)
    for topic, count in completed.items():
        key = (topic or "?", "completed")
        stats[key] = stats.get(key, 0) + count
    # jobs waiting on these (the flag it needs was read with the batch's reads)
    dependencies.settled(tr, layout, outcomes, applied, now, slack, reads.dependencies_flag)
    stale = len(applied) - sum(applied)
    if stale:
        stats[("*", "stale")] = stale
    flush_stats(tr, layout, stats)
    if kept:  # nothing at all unless a job kept its result
        history.prune_for(tr, layout, now, kept)
        if on_kept is not None:
            on_kept(tr)
    return applied


def _all_completed(tr: Transaction, outcomes: list[Outcome], reads: BatchReads,
                   budget: int | None, completed: Tally) -> list[bool] | None:
    """The usual batch: completions only, every lease intact, no result kept, and all of it
    estimated under half the byte ``budget`` (``ByteBudget`` would not even ask the size):
    applied in one loop with nothing to decide per outcome; None, and nothing done, for any
    other batch (``_settle_each`` applies it). The checks run in C over the whole batch."""
    if None in reads.intact or any(map(_KEPT, outcomes)):
        return None
    if budget is not None and 2 * (_ENTRY_BYTES * len(outcomes) + 2 * sum(
            map(len, map(_REASON, outcomes)))) >= budget:
        return None
    # A visit's leased entries by one range clear (``BatchReads.spans``: the range holds
    # them and nothing else), before the other keys (a range clear over buffered writes
    # searches them). Measured (issue 10, callgrind, settle harness, batches of 32 from one
    # visit): 63.5k -> 55.4k instructions a job, against a DELETE of each entry by its key.
    for begin, end in reads.spans:
        tr.clear_range(begin, end)
    # the other keys of every job in one call (issue 10: two calls of tr.clear a job before)
    tr.clear_many(reads.clears)
    # a batch's jobs share one topic or a few: a set built in C says which (a Counter cost
    # about 6k instructions a batch and 0.6k a job, callgrind)
    topics = set(map(_TOPIC, outcomes))
    if len(topics) == 1:
        completed[topics.pop()] = len(outcomes)
    else:
        for topic in map(_TOPIC, outcomes):
            completed[topic] = completed.get(topic, 0) + 1
    return [True] * len(outcomes)


def _settle_each(
    tr: Transaction, layout: Layout, outcomes: list[Outcome], reads: BatchReads, now: int,
    slack: int, max_snoozes: int, stats: Stats, budget: int | None, completed: Tally,
) -> tuple[list[bool], int]:
    """``settle_many``'s outcomes one by one, until the byte ``budget`` is spent: whether each
    was applied, and how many kept their result."""
    applied: list[bool] = []
    intact = reads.intact
    bytes_left = ByteBudget(tr, budget)
    clear = tr.clear
    kept = 0
    for index, outcome in enumerate(outcomes):
        if applied and bytes_left.spent():
            break
        fast = intact[index]
        if fast is not None and outcome.kept is None:
            # a completion (intact lease, no kept result): ``_complete_fast`` inlined
            for key in fast:
                clear(key)
            bytes_left.add(_ENTRY_BYTES + 2 * len(outcome.reason))
            applied.append(True)
            completed[outcome.topic] = completed.get(outcome.topic, 0) + 1
            continue
        # an over-estimate of the bytes this outcome adds: its record rewritten (or buried,
        # with the reason), a kept result (up to a value), keys and conflict ranges
        estimate = _ENTRY_BYTES + 2 * len(outcome.reason) + (
            VALUE_LIMIT if outcome.kept is not None else 0)
        if fast is not None:
            _complete_fast(tr, fast)
            _keep_completed(tr, layout, outcome, now, prune=False)
            ok = True
        else:
            raw, extension = (None, None) if reads.repeat[index] else reads.record(index)
            estimate += 2 * (VALUE_LIMIT if reads.repeat[index] else len(raw or b""))
            ok = _settle_isolated(tr, layout, outcome, now, slack, max_snoozes, stats,
                                  reads.markers, raw, extension, repeat=reads.repeat[index])
            if not ok and raw is None and not reads.repeat[index] and _completed_before(
                    tr, layout, outcome):
                applied.append(True)  # reported as done; the earlier commit counted it
                continue
        bytes_left.add(estimate)
        applied.append(ok)
        kept += ok and outcome.kept is not None
        if ok and outcome.kind == "done":
            completed[outcome.topic] = completed.get(outcome.topic, 0) + 1
    return applied, kept


def _settle_isolated(
    tr: Transaction, layout: Layout, outcome: Outcome, now: int, slack: int, max_snoozes: int,
    stats: Stats, markers: Markers, raw: bytes | None, extension: bytes | None, *,
    repeat: bool,
) -> bool:
    """``settle`` for one outcome of a batch: a record that cannot be decoded fails only its
    own outcome (it is buried as "unreadable", the outcome reported not applied), never the
    batch. ``settle`` reads the record before it writes anything, so nothing half-applied
    stays behind."""
    try:
        if repeat:  # (its job met earlier in the batch: it reads for itself)
            markers.pop(outcome.tenant, None)  # settle may move it: not known any more
            return settle(tr, layout, outcome, now, slack, max_snoozes, stats, prune=False)
        return _settle_record(tr, layout, outcome, raw, now, slack, max_snoozes, stats,
                              prune=False, markers=markers, extension=extension)
    except UnreadableRecord as error:
        zone = layout.zone(outcome.tenant)
        if outcome.lease_at:
            tr.clear(zone.leased_key(outcome.lease_at, outcome.job_id))
        bury_unreadable(tr, zone, outcome.job_id, error.raw, now, error.reason, stats)
        return False


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
