"""Kept results and job history (opt-in; DESIGN.md §8 "History is opt-in").

A job whose handler (``@job(keep_result=...)``) or queue (the ``keep_result`` setting) asks for
it leaves, when it ends, one entry at ``history/{tenant}/{job_id}`` with how it ended, its
attempts, its timings, the returned value and the last error, and one empty index entry at
``history_expiry/{expires}/{tenant}/{job_id}``. Both are written blind in the transaction that
settles the job, from what the outcome carries (``outcomes.Kept``): no read is added, and a job
that did not ask writes nothing at all.

Pruning is incremental: every settle transaction that writes entries also removes up to a few
expired ones per entry written (oldest first, one snapshot range read of the expiry index), so
the history stays bounded by what is written during one retention period without a sweeper.
An expired entry that is not pruned yet is never shown (``read`` checks the expiry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from quick_queue.keys import Layout, pack_int, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import VALUE_LIMIT, JobInfo, JobRecord, dump, load, to_datetime
from quick_queue.outcomes import FinalState, Kept, OutcomeKind

# Expired entries removed per entry written (and at least PRUNE_MIN per settle that writes):
# more than one, so a backlog left by a burst drains while writing continues.
PRUNE_PER_WRITE = 2
PRUNE_MIN = 4
ERROR_LIMIT = 2000  # characters of the last error kept
_HEADER_ROOM = 8192  # bytes of an entry reserved for its header (topic, key, error, note)
VALUE_ROOM = VALUE_LIMIT - _HEADER_ROOM  # the largest returned value kept, as JSON bytes


@dataclass(frozen=True)
class HistoryEntry:
    """One finished job as kept. Times are microseconds; ``duration`` seconds."""

    tenant: str
    job_id: str
    state: FinalState
    topic: str
    attempt: int
    max_retries: int
    priority: int
    enqueued: int
    started: int
    finished: int
    expires: int
    duration: float | None
    error: str | None
    key: str | None
    note: str | None
    value_raw: bytes | None

    @property
    def has_value(self) -> bool:
        return self.value_raw is not None

    def value(self) -> Any:
        return load(self.value_raw) if self.value_raw is not None else None

    def encode(self) -> bytes:
        head = dump({
            "s": str(self.state), "t": self.topic, "a": self.attempt, "m": self.max_retries,
            "pr": self.priority, "e": self.enqueued, "b": self.started, "f": self.finished,
            "x": self.expires, "du": self.duration, "er": self.error, "k": self.key,
            "n": self.note, "v": self.value_raw is not None,
        })
        return head + b"\n" + (self.value_raw or b"")

    @classmethod
    def decode(cls, tenant: str, job_id: str, raw: bytes) -> HistoryEntry | None:
        """The entry, or None if ``raw`` is not one (never raises: history is a view)."""
        head, _, body = raw.partition(b"\n")
        try:
            d = load(head)
            return cls(
                tenant, job_id, FinalState(d["s"]), str(d["t"]), int(d["a"]), int(d["m"]),
                int(d["pr"]), int(d["e"]), int(d["b"]), int(d["f"]), int(d["x"]),
                None if d["du"] is None else float(d["du"]), d["er"], d["k"], d["n"],
                body if d["v"] else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def final_state(kind: OutcomeKind, buried: bool) -> FinalState | None:
    """How an outcome that was applied left the job: None while the job lives on (a retry or
    a snooze that rescheduled it, a release)."""
    # == rather than is: an Outcome built with the kind's plain string value means the same
    if kind == OutcomeKind.DONE:
        return FinalState.COMPLETED
    if kind == OutcomeKind.DISCARD:
        return FinalState.DISCARDED
    if kind == OutcomeKind.DEAD or buried:
        return FinalState.DEAD
    return None


def write(
    tr: Transaction, layout: Layout, tenant: str, job_id: str, kept: Kept, state: FinalState,
    now: int, error: str | None,
) -> None:
    """Keep the entry of a job that just ended (blind writes only)."""
    value, note = kept.value, kept.note
    if state is not FinalState.COMPLETED:
        value = None  # only a completion has a result
    entry = HistoryEntry(
        tenant, job_id, state, kept.topic, kept.attempt, kept.max_retries, kept.priority,
        kept.enqueued, kept.started or now, now, now + kept.keep, kept.duration,
        error[:ERROR_LIMIT] if error else None, kept.key, note, value,
    )
    raw = entry.encode()
    if len(raw) > VALUE_LIMIT:  # a huge key or topic left no room for the value
        raw = replace(entry, value_raw=None,
                      note="result not kept: the entry would exceed the value limit").encode()
    tr.set(layout.history(tenant, job_id), raw)
    tr.set(layout.expiry(entry.expires, tenant, job_id), b"")


def write_record(
    tr: Transaction, layout: Layout, tenant: str, record: JobRecord, state: FinalState,
    keep: int, now: int, error: str | None,
) -> None:
    """Keep the entry of a job ended without a run's outcome (a cancel), from its record."""
    kept = Kept(keep, 0, None, None, None, record.topic, record.attempt, record.max_retries,
                record.priority, record.enqueued, record.error, record.key)
    write(tr, layout, tenant, record.job_id, kept, state, now, error)


def prune(tr: Transaction, layout: Layout, now: int, limit: int) -> int:
    """Remove up to ``limit`` entries that expired by ``now``; how many index entries went.

    The expiry index is read at snapshot (two settlers pruning at once must not abort each
    other; clearing twice is harmless). The entry itself is read for real and removed only if
    it is still the one that expired: a job id reused since (a ``key=``) keeps its newer
    entry."""
    begin = layout.expiry_prefix
    end = begin + pack_int(now + 1)
    rows = tr.snapshot.get_range(begin, end, limit=limit)
    if not rows:
        return 0
    parsed = [unpack(key, len(begin)) for key, _ in rows]
    entry_keys = [layout.history(str(p[1]), str(p[2])) for p in parsed]
    for (key, _), parts, entry_key, raw in zip(
        rows, parsed, entry_keys, tr.get_many(entry_keys), strict=True
    ):
        if raw is not None and _expires_of(raw) in (parts[0], None):
            tr.clear(entry_key)
        tr.clear(key)
    return len(rows)


def prune_for(tr: Transaction, layout: Layout, now: int, written: int) -> int:
    """Pruning paid for by ``written`` new entries (nothing when none was written)."""
    if not written:
        return 0
    return prune(tr, layout, now, max(PRUNE_MIN, PRUNE_PER_WRITE * written))


def read(tr: ReadView, layout: Layout, tenant: str, job_id: str, now: int
         ) -> HistoryEntry | None:
    raw = tr.get(layout.history(tenant, job_id))
    return of_raw(tenant, job_id, raw, now)


def of_raw(tenant: str, job_id: str, raw: bytes | None, now: int) -> HistoryEntry | None:
    """The entry stored as ``raw`` unless it is absent, unreadable or expired by ``now``."""
    if raw is None:
        return None
    entry = HistoryEntry.decode(tenant, job_id, raw)
    if entry is None or entry.expires <= now:
        return None
    return entry


def _expires_of(raw: bytes) -> int | None:
    head = raw.partition(b"\n")[0]
    try:
        return int(load(head)["x"])
    except (ValueError, KeyError, TypeError):
        return None




def info(entry: HistoryEntry) -> JobInfo:
    """The ``JobInfo`` ``get_job`` shows for a finished job that kept its result."""
    base = JobInfo(
        job_id=entry.job_id, tenant=entry.tenant, topic=entry.topic, state=str(entry.state),
        attempt=entry.attempt, max_retries=entry.max_retries, priority=entry.priority,
        payload=None, due_at=None, enqueued_at=to_datetime(entry.enqueued),
        last_error=entry.error, key=entry.key,
        result=entry.value() if entry.state is FinalState.COMPLETED else None,
        result_note=entry.note,
    )
    return with_timings(base, entry)


def with_timings(job: JobInfo, entry: HistoryEntry) -> JobInfo:
    """``job`` with the timings of its history entry (a dead letter that also kept them)."""
    return replace(
        job, started_at=to_datetime(entry.started), finished_at=to_datetime(entry.finished),
        duration=entry.duration, kept_until=to_datetime(entry.expires),
    )
