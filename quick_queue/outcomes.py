"""How one attempt of a job ends, typed: the outcome kinds, the job states, and the one table
that says what each kind does to the job's record, to the store's per-topic counters and to the
process's counters.

Every place that acts on an outcome reads this table instead of comparing strings of its own:
``core.settle`` applies the record change, the consumer's settler counts and emits the event.
Adding a kind means adding a member here and a row to ``EFFECTS``; mypy and
``tests/unit/test_outcomes.py`` then point at every place that has to learn of it.

``OutcomeKind`` and ``JobState`` are ``StrEnum``: a member compares equal to its string value,
so the stored one-letter job states and the logged kind names stay what they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """Where a live job's index entry is (stored as one letter in the record)."""

    READY = "r"
    SCHEDULED = "s"
    LEASED = "l"
    DEAD = "d"

    @property
    def label(self) -> str:
        return _STATE_LABELS[self]


_STATE_LABELS = {
    JobState.READY: "ready",
    JobState.SCHEDULED: "scheduled",
    JobState.LEASED: "leased",
    JobState.DEAD: "dead",
}


class OutcomeKind(StrEnum):
    """How one attempt ended, as the runtime tells the store."""

    DONE = "done"  # completed: the record is deleted
    RETRY = "retry"  # a failed attempt: backoff, or dead once retries are spent
    SNOOZE = "snooze"  # due again later, no attempt spent
    DISCARD = "discard"  # the handler gave up on it: dead letter with its reason
    DEAD = "dead"  # dead at once without running: unknown topic, bad payload, unreadable record
    RELEASE = "release"  # handed back unrun or unfinished (shutdown): no attempt spent


class LeaseLoss(StrEnum):
    """Why a worker's lease on a job is gone (``core.settle.lease_loss``): what its log and
    events should say instead of a bare "stale"."""

    CANCELLED = "cancelled"  # no record any more: cancelled (or finished by another worker)
    DEAD = "dead"  # moved to the dead letters (purged, expired, or buried by another worker)
    TAKEN = "taken"  # the lease expired and another worker leased the job (or it waits again)
    UNREADABLE = "unreadable"  # the stored record cannot be decoded
    HELD = "held"  # not lost: the lease is still this token's


class RecordEffect(StrEnum):
    """What an outcome does to the job's record in the store."""

    DELETE = "delete"
    RESCHEDULE = "reschedule"  # back to ready or scheduled, the attempt kept or given back
    BURY = "bury"  # to the dead letters


@dataclass(frozen=True)
class Effect:
    """One row of ``EFFECTS``.

    ``record``: what settling does to the record. ``spends_attempt``: whether the attempt that
    ran counts against ``max_retries``. ``store_counters``: the per-topic counters the settle
    transaction adds to. ``event``: the name of the runtime event (and of the process counter)
    emitted once the outcome is applied.
    """

    record: RecordEffect
    spends_attempt: bool
    store_counters: tuple[str, ...]
    event: str


# A failed attempt whose retries are spent becomes "dead" (see ``retry_effect``); a snooze past
# ``max_snoozes`` is buried too (``core.settle`` decides both, since only it reads the record).
EFFECTS: dict[OutcomeKind, Effect] = {
    OutcomeKind.DONE: Effect(RecordEffect.DELETE, True, ("completed",), "completed"),
    OutcomeKind.RETRY: Effect(RecordEffect.RESCHEDULE, True, ("failed", "retried"), "retried"),
    OutcomeKind.SNOOZE: Effect(RecordEffect.RESCHEDULE, False, ("snoozed",), "snoozed"),
    OutcomeKind.DISCARD: Effect(RecordEffect.BURY, True, ("discarded", "dead"), "discarded"),
    OutcomeKind.DEAD: Effect(RecordEffect.BURY, True, ("dead",), "dead"),
    OutcomeKind.RELEASE: Effect(RecordEffect.RESCHEDULE, False, (), "released"),
}

# The failed attempt that was the last one allowed.
LAST_RETRY_EFFECT = Effect(RecordEffect.BURY, True, ("failed", "dead"), "dead")


def retry_effect(attempt: int, max_retries: int) -> Effect:
    """The effect of a failed attempt number ``attempt`` (1-based) of a job allowed
    ``max_retries`` retries after its first run."""
    if attempt > max_retries:
        return LAST_RETRY_EFFECT
    return EFFECTS[OutcomeKind.RETRY]


class FinalState(StrEnum):
    """How a job whose result is kept ended (``core.history``): what ``get_job`` shows for it
    after it left the live states."""

    COMPLETED = "completed"
    DEAD = "dead"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Kept:
    """What a run that asked to keep its result (``@job(keep_result=...)`` or the queue's
    ``keep_result`` setting) hands to the settle transaction, so the history entry is written
    blind (no record read, the fast completion path stays read-free).

    ``keep`` is the retention in microseconds; ``value`` the returned value as JSON bytes
    (None when there is none to keep, ``note`` then says why: too large, not JSON);
    ``started`` when the handler started (microseconds) and ``duration`` how long it ran
    (seconds, monotonic). The other fields copy the job's record as the worker leased it."""

    keep: int
    started: int
    duration: float | None
    value: bytes | None
    note: str | None
    topic: str
    attempt: int
    max_retries: int
    priority: int
    enqueued: int
    error: str | None
    key: str | None


@dataclass(frozen=True)
class Outcome:
    """How one run ended, as the runtime tells the store.

    ``at`` is when a retried or snoozed job is due again (microseconds). ``reason`` explains a
    retry, discard or dead letter; ``dead_kind`` names why a job died without running
    (``unknown_topic``, ``bad_payload``, ``unreadable``). ``lease_at`` is the lease expiry the
    consumer last knew: with it a completion takes the fast path (no record decode).
    ``max_retries`` is the running handler's limit (``@job(max_retries=...)``, else the worker
    queue's setting): settling a failure judges by it when the producer fixed none, so a
    producer that never imported the handler still gets the handler's limit. None: the
    record's own limit. ``kept``: set only for a job that keeps its result; settling then
    writes its history entry if the outcome ends the job (None: nothing is written).
    """

    tenant: str
    job_id: str
    token: str
    kind: OutcomeKind
    at: int = 0
    reason: str = ""
    dead_kind: str = ""
    topic: str = ""
    lease_at: int = 0
    max_retries: int | None = None
    kept: Kept | None = None
