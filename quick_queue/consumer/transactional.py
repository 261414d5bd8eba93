"""Running a transactional job (``@job(transactional=True)``): the handler's writes and the
job's completion commit in one transaction, so the work is done exactly once or not at all.

Only a completion commits with the handler's writes; any other outcome (retry, snooze,
discard, dead) rolls them back and is settled on its own by the settler.
"""

from __future__ import annotations

from quick_queue.consumer.executor import bad_payload_outcome, call_handler, to_outcome
from quick_queue.consumer.inflight import Running
from quick_queue.consumer.settler import Settler
from quick_queue.context import QueueContext
from quick_queue.core.records import flush_stats
from quick_queue.core.settle import settle
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us
from quick_queue.outcomes import Outcome, OutcomeKind

TRANSACTIONAL_RETRY_LIMIT = 5  # retries of a transactional job's transaction per attempt


class _Stale(Exception):
    """A transactional job's lease was lost: its writes must not commit."""


class _NotDone(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def run_transactional(context: QueueContext, running: Running, settler: Settler) -> None:
    """Run the handler inside a transaction that also completes the job; hand any other
    outcome to ``settler``."""
    job = running.job
    done = Outcome(job.tenant, job.record.job_id, job.token, OutcomeKind.DONE)
    try:
        context.db.transact(_Body(context, running))
    except _NotDone as not_done:
        settler.submit(running, not_done.outcome)
        return
    except _Stale:
        with settler.inflight.cond:
            first = settler.inflight.claim_outcome(running, OutcomeKind.DONE)
        if first:  # (else a timeout or release went out first and reports the run)
            settler.finish(running, done, applied=False)
        return
    except Exception as error:  # noqa: BLE001 - a commit error is a failed attempt
        outcome = to_outcome(running, error, context.clock.now(), context.settings, context.rng)
        settler.submit(running, outcome)
        return
    finally:
        running.meta.tr = None
    with settler.inflight.cond:
        running.outcome_kind = OutcomeKind.DONE
    settler.finish(running, done, applied=True)


class _Body:
    """The function the retry loop runs: one call of the handler per try."""

    def __init__(self, context: QueueContext, running: Running) -> None:
        self.context = context
        self.running = running
        self.tries = 0

    def __call__(self, tr: Transaction) -> None:
        running, context = self.running, self.context
        settings, layout = context.settings, context.layout
        self.tries += 1
        if self.tries == 1:
            # Each retry runs the handler again: a handler that outlives the transaction
            # limit (1007) would rerun forever. Past the limit it is a failed attempt.
            tr.options.set_retry_limit(TRANSACTIONAL_RETRY_LIMIT)
        elif running.abandoned or running.meta.lease_lost.is_set():
            raise _Stale()  # timed out or lease lost meanwhile: do not run it again
        running.meta.tr = tr
        result = call_handler(running)
        now = context.clock.now()
        outcome = bad_payload_outcome(running, result) or to_outcome(
            running, result, now, settings, context.rng
        )
        if outcome.kind is not OutcomeKind.DONE:
            raise _NotDone(outcome)
        stats: dict[tuple[str, str], int] = {}
        if not settle(tr, layout, outcome, to_us(now), to_us(settings.pointer_slack),
                      settings.max_snoozes, stats):
            raise _Stale()
        stats[(running.job.record.topic, "completed")] = 1
        flush_stats(tr, layout, stats)
