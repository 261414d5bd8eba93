"""core.history and its hooks in core.settle: blind writes only for outcomes that keep their
result, pruning a bounded number of expired entries per write, waiters notified once."""

from __future__ import annotations

from quick_queue.core import history
from quick_queue.core.settle import settle_many
from quick_queue.kv.api import Transaction
from quick_queue.models import LeasedJob
from quick_queue.outcomes import FinalState, Kept, Outcome, OutcomeKind
from tests.support.corekit import Core

NOW = 1_800_000_000_000_000
MINUTE = 60_000_000


def _kept(job: LeasedJob, keep: int = MINUTE, value: bytes | None = b'"ok"') -> Kept:
    r = job.record
    return Kept(keep, NOW, 0.5, value, None, r.topic, r.attempt, r.max_retries, r.priority,
                r.enqueued, r.error, r.key)


def _done(job: LeasedJob, kept: Kept | None) -> Outcome:
    return Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE,
                   topic=job.record.topic, lease_at=job.record.at, kept=kept)


def _settle(core: Core, outcomes: list[Outcome], now: int, calls: list[int]) -> list[bool]:
    def on_kept(tr: Transaction) -> None:
        calls.append(1)

    return core.db.transact(settle_many, core.layout, outcomes, now, 0, 100, on_kept)


def test_outcomes_that_keep_nothing_write_and_notify_nothing(core: Core) -> None:
    for _ in range(3):
        core.enqueue("shop", NOW)
    jobs = core.visit("shop", NOW)
    calls: list[int] = []
    assert _settle(core, [_done(j, None) for j in jobs], NOW, calls) == [True] * 3
    store = core.store()
    assert store.history == {} and store.history_expiry == [] and calls == []


def test_kept_outcomes_are_written_and_notified_once_per_batch(core: Core) -> None:
    for _ in range(2):
        core.enqueue("shop", NOW)
    jobs = core.visit("shop", NOW)
    calls: list[int] = []
    assert _settle(core, [_done(j, _kept(j)) for j in jobs], NOW + 5, calls) == [True, True]
    assert calls == [1]
    store = core.store()
    assert len(store.history) == 2 and len(store.history_expiry) == 2
    entry = history.read(core.db.create_transaction(), core.layout, "shop",
                         jobs[0].record.job_id, NOW + 5)
    assert entry is not None
    assert (entry.state, entry.value(), entry.finished, entry.expires) == (
        FinalState.COMPLETED, "ok", NOW + 5, NOW + 5 + MINUTE)


def test_each_write_prunes_a_bounded_number_of_expired_entries(core: Core) -> None:
    for _ in range(11):
        core.enqueue("shop", NOW)
    jobs = core.visit("shop", NOW, count=11)
    old, new = jobs[:10], jobs[10]
    calls: list[int] = []
    _settle(core, [_done(j, _kept(j, keep=1)) for j in old], NOW, calls)
    assert len(core.store().history) == 10
    _settle(core, [_done(new, _kept(new))], NOW + 10, calls)
    store = core.store()
    # one write pays for max(PRUNE_MIN, PRUNE_PER_WRITE) expired entries, oldest first
    assert len(store.history) == 10 - history.PRUNE_MIN + 1
    assert len(store.history_expiry) == len(store.history)


def test_an_undecodable_entry_is_not_shown() -> None:
    assert history.HistoryEntry.decode("t", "j", b"\xff\x00") is None
    assert history.of_raw("t", "j", b'{"s":"completed"}\n', 0) is None
