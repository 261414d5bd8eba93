"""Running a transactional job (``@job(transactional=True)``): the handler's writes and the
job's completion commit in one transaction, so the work is done exactly once or not at all.

Only a completion commits with the handler's writes; any other outcome (retry, snooze,
discard, dead) rolls them back and is settled on its own by the settler.

The transaction and the job's lease (issue 8, item 1). The completion reads the job's lease
entry (its fast path) or its record, and every lease extension moves that entry (since issue
14 an extension writes only the entry and the job's extension record, never the record; see
``core.records``): an extension committed while the handler's transaction is open makes that
transaction's commit fail (1020), each retry runs the handler again, and a handler longer
than one extension period never commits. So the worker never extends a lease under its own
transaction: before each try, the lease is made to cover the transaction's whole possible
life (a transaction lives at most ``TRANSACTION_LIMIT`` seconds: FoundationDB's limit, and
the embedded engine's), and the keeper leaves it alone until that life is over
(``Running.tx_until``). Nothing else writes a leased job's entry or record but a cancel or,
once the lease expired, another consumer, and those are exactly the conflicts that must
refuse the commit. This stays correct with extensions that do not rewrite the record: the
stretch is itself such an extension (small keys, committed before the transaction's first
read), and the keeper skips the lease, so nothing moves the entry under the transaction.

Why not keep extending and make the completion blind to extensions (read the record, which
extensions no longer write, and the entry by a snapshot read)? The record read would still
fence a cancel or a re-lease, but an extension landing inside the transaction would move the
entry after the completion looked: the completion would clear the old place and leave the
moved entry behind, a leased entry with no job (shown by the views as leased until it
expires, and against DESIGN.md §4's one-entry-per-job rule). Stretching first keeps the
store exact at the cost of one small extension per transactional job with a short lease.

A handler that runs past the limit could never commit (its transaction is too old), so it
fails the attempt at once with a reason that says so, on every engine alike, instead of
being run again by the transaction's retry loop.
"""

from __future__ import annotations

import logging
import time

from quick_queue.consumer.executor import call_handler, to_outcome
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.consumer.settler import Settler
from quick_queue.context import QueueContext
from quick_queue.core import dependencies
from quick_queue.core.leases import extend_leases
from quick_queue.core.records import flush_stats
from quick_queue.core.settle import settle
from quick_queue.jobs import Error
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KVError
from quick_queue.models import to_us
from quick_queue.outcomes import Outcome, OutcomeKind

log = logging.getLogger("quick_queue.worker")

TRANSACTIONAL_RETRY_LIMIT = 5  # retries of a transactional job's transaction per attempt
#: Seconds a transaction may live (FoundationDB's limit; the embedded engine enforces the
#: same one, 1007 transaction_too_old). A transactional handler must return within it.
TRANSACTION_LIMIT = 5.0
#: Lease beyond the transaction's life: covers the extension's own commit, the completion's
#: commit and the keeper's next round after the keeper resumes.
LEASE_MARGIN = 5.0


class _Stale(Exception):
    """A transactional job's lease was lost: its writes must not commit."""


class _NotDone(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class _TooLong(Exception):
    """The handler ran past the transaction limit: its transaction can never commit."""

    def __init__(self, elapsed: float) -> None:
        super().__init__(
            f"transactional handler ran {elapsed:.1f} s, longer than the "
            f"{TRANSACTION_LIMIT:g} s transaction limit (transaction_too_old): make it "
            "shorter or use transactional=False"
        )


def run_transactional(context: QueueContext, running: Running, settler: Settler) -> None:
    """Run the handler inside a transaction that also completes the job; hand any other
    outcome to ``settler``."""
    job = running.job
    done = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE)
    body = _Body(context, running, settler.inflight)
    try:
        context.db.transact(body)
    except _NotDone as not_done:
        settler.submit(running, not_done.outcome)
        return
    except _Stale:
        with settler.inflight.cond:
            first = settler.inflight.claim_outcome(running, OutcomeKind.DONE)
        if first:  # (else a timeout or release went out first and reports the run)
            settler.finish(running, done, applied=False)
        return
    except _TooLong as too_long:
        spec = running.spec
        log.warning("%s %s/%s: %s", spec.name if spec else "?", *running.key, too_long)
        settler.submit(running, _failed(context, running, str(too_long)))
        return
    except Exception as error:  # noqa: BLE001 - a commit error is a failed attempt
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, KVError) and body.tries > 1:
            reason = f"the job's transaction failed {body.tries} times; last: {reason}"
        settler.submit(running, _failed(context, running, reason))
        return
    finally:
        running.meta.tr = None
        with settler.inflight.cond:
            running.tx_until = 0.0  # the keeper extends this lease again
    with settler.inflight.cond:
        running.outcome_kind = OutcomeKind.DONE
    settler.finish(running, done, applied=True)


def _failed(context: QueueContext, running: Running, reason: str) -> Outcome:
    return to_outcome(running, Error(reason), context.db.store_time(), context.settings,
                      context.rng)


class _Body:
    """The function the retry loop runs: one call of the handler per try."""

    def __init__(self, context: QueueContext, running: Running, inflight: InFlight) -> None:
        self.context = context
        self.running = running
        self.inflight = inflight
        self.tries = 0

    def __call__(self, tr: Transaction) -> None:
        running, context = self.running, self.context
        settings, layout = context.settings, context.layout
        self.tries += 1
        if self.tries == 1:
            tr.options.set_retry_limit(TRANSACTIONAL_RETRY_LIMIT)
        elif running.abandoned or running.meta.lease_lost.is_set():
            raise _Stale()  # timed out or lease lost meanwhile: do not run it again
        self._cover_lease()  # before ``tr`` reads anything: it must not see the extension
        running.meta.tr = tr
        started = time.monotonic()
        try:
            # The store's errors raised on ``meta.tr`` (a read past the limit, a timeout) go
            # to the retry loop, not into the job's error: they are the transaction's.
            result = call_handler(running, passthrough=(KVError,))
        except KVError as error:
            if _past_limit(started):  # (a read past the limit: 1007 on every engine)
                raise _TooLong(time.monotonic() - started) from error
            raise
        if _past_limit(started):
            raise _TooLong(time.monotonic() - started)
        now = context.db.store_time()
        outcome = to_outcome(running, result, now, settings, context.rng)
        if outcome.kind is not OutcomeKind.DONE:
            raise _NotDone(outcome)
        stats: dict[tuple[str, str], int] = {}
        if not settle(tr, layout, outcome, to_us(now), to_us(settings.pointer_slack),
                      settings.max_snoozes, stats):
            raise _Stale()
        # jobs enqueued after= this one are released in this same transaction, as settle_many
        # does for every other completion (else they would wait for the workers' reconcile)
        dependencies.settled(tr, layout, [outcome], [True], to_us(now),
                             to_us(settings.pointer_slack))
        stats[(running.job.record.topic, "completed")] = 1
        flush_stats(tr, layout, stats)

    def _cover_lease(self) -> None:
        """Make the lease outlast the transaction about to start, and keep the keeper off it
        until the transaction is over (raises ``_Stale`` if the lease is already lost)."""
        running, context, inflight = self.running, self.context, self.inflight
        with inflight.cond:
            # The keeper skips the lease from now on, and a round already extending it is
            # waited for: its commit must land before this transaction's first read.
            running.tx_until = time.monotonic() + TRANSACTION_LIMIT + 1.0
            while running.extending:
                inflight.cond.wait(0.05)
            held_until = running.job.record.at
        lease = max(context.settings.item_lease, TRANSACTION_LIMIT + LEASE_MARGIN)
        now = context.db.store_time()
        if held_until >= to_us(now + TRANSACTION_LIMIT + LEASE_MARGIN):
            return  # long enough already (the usual case with the default 30 s lease)
        job = running.job
        kept = context.db.transact(
            extend_leases, context.layout,
            [(job.tenant, job.record.job_id, job.token, held_until)], to_us(now), to_us(lease),
        )
        with inflight.cond:
            if kept[0]:
                job.record.at = max(job.record.at, to_us(now) + to_us(lease))
                return
        running.meta.lease_lost.set()
        raise _Stale()


def _past_limit(started: float) -> bool:
    return time.monotonic() - started > TRANSACTION_LIMIT
