"""The in-flight table: every job this consumer holds a lease on, from dequeue until its outcome
is settled, and the slots that bound how many it may hold.

A consumer of ``concurrency`` runs at most that many handlers at once and holds at most
``concurrency + prefetch`` leases (the scanner fetches the next batch while one runs; by
default one prefetched job per worker, fifteen while handlers are quick: ``_prefetch``). A
handler that overruns its ``@job(timeout=...)`` keeps its worker thread and its slot until it
returns: the job itself is settled as a failed attempt at once (so it can be retried), but the
consumer works with one worker fewer meanwhile, and a retry of that job leased here waits for
the old call to end. So a hung handler costs one slot, never an extra thread, and never runs
beside its own retry in this process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from quick_queue.errors import InvalidArgument
from quick_queue.events import safe
from quick_queue.jobs import JobMeta, JobSpec
from quick_queue.models import LeasedJob
from quick_queue.outcomes import OutcomeKind

JobKey = tuple[str, str]  # (tenant, job_id)
#: While handlers are quick (their recent mean below ``QUICK_HANDLER`` seconds), a consumer
#: with the default prefetch holds up to this many leases per worker beyond the one running,
#: instead of one. See ``InFlight.note_handler`` and ``InFlight._prefetch``.
QUICK_PREFETCH = 15
QUICK_HANDLER = 0.002
#: Weight of the newest handler call in the running mean of call times.
HANDLER_MEAN_WEIGHT = 0.05


@dataclass(eq=False, init=False)
class Running:
    """A job handed to this consumer, from dequeue until its outcome is settled.

    Built by hand (``__init__``): the fields with a default are read from the class until
    they are first set, so a run costs three assignments and its key instead of the
    generated ``__init__``'s thirteen, and ``key`` is a field read at each table update rather
    than a property building the tuple (issue 10: one of these per job leased)."""

    job: LeasedJob
    meta: JobMeta
    spec: JobSpec | None
    key: JobKey  # (tenant, job_id)
    started: float = 0.0  # the store's time (seconds); 0 while queued locally
    started_mono: float = 0.0  # monotonic seconds, for durations
    # When the handler has a timeout: its deadline on the monotonic clock, and the same in the
    # store's time (None if it could not be read); the keeper fires at whichever comes first.
    deadline: float | None = None
    store_deadline: float | None = None
    abandoned: bool = False  # timed out or released: a later outcome is ignored
    settled: bool = False
    outcome_kind: OutcomeKind | None = None  # the first outcome submitted (it wins)
    # A transactional handler's transaction may be open until this monotonic time: the keeper
    # leaves its lease alone meanwhile (an extension would conflict with the transaction; see
    # consumer/transactional.py, which stretches the lease over it instead).
    tx_until: float = 0.0
    extending: bool = False  # the keeper's extension of this lease is being committed

    def __init__(self, job: LeasedJob, meta: JobMeta, spec: JobSpec | None) -> None:
        self.job, self.meta, self.spec = job, meta, spec
        self.key = (job.tenant, job.record.job_id)

    @property
    def where(self) -> str:
        """``tenant/job_id`` for a log line, control characters escaped."""
        return f"{safe(self.job.tenant)}/{safe(self.job.record.job_id)}"


class InFlight:
    """The table and its lock. ``cond`` (its lock: ``lock``) guards every field of the table
    and of its entries; waiting on it wakes on a freed slot and on a handler's end."""

    def __init__(self, concurrency: int, prefetch: int | None = None) -> None:
        if concurrency < 1:
            raise InvalidArgument(f"concurrency must be >= 1, not {concurrency!r}")
        self.concurrency = concurrency
        self.prefetch = prefetch
        # running mean of handler call times (seconds); None until the first call ends
        self.handler_mean: float | None = None
        # ``with lock`` is ``with cond`` (the same lock) without Condition's Python-level
        # __enter__/__exit__: the hot paths take it three or four times a job (issue 10)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.entries: dict[JobKey, Running] = {}
        self.running = 0  # handler calls in progress, overrunning ones included
        self.overrunning: dict[JobKey, Running] = {}  # past their timeout, still running
        # threads waiting on ``cond`` for the handlers to end (a shutdown): a worker whose
        # handler ends notifies only while there are some (a notify per job woke the scanner
        # for nothing: no slot is freed before the outcome is settled)
        self.handler_waiters = 0

    # All below: call with ``cond`` held.
    def workers_left(self) -> int:
        """Workers not held by an overrunning handler."""
        return max(0, self.concurrency - len(self.overrunning))

    def note_handler(self, seconds: float) -> None:
        """A handler call of ``seconds`` ended (for the default prefetch's depth)."""
        mean = self.handler_mean
        self.handler_mean = seconds if mean is None else (
            mean + HANDLER_MEAN_WEIGHT * (seconds - mean))

    def _prefetch(self, workers: int) -> int:
        """Jobs leased beyond the ``workers`` free to run them: one each, or with the default
        prefetch ``QUICK_PREFETCH`` each while handlers are quick.

        Why deeper for quick handlers: a worker process spends its time on the visits that
        lease jobs and the commits that settle them, and a quick job waits on neither for
        long, so a deeper table lets each visit and each settle carry more jobs, and the
        scanner lease the next batch while the settle's fsync of the last one is under way.
        Measured (issue 10, 20,000 no-op jobs, 20 per tenant over 1,000 tenants, a worker
        process of concurrency 16, three interleaved pairs on a busy machine): 3,339 / 4,320 /
        3,490 jobs/s at one each, 4,673 / 5,240 / 3,937 at three, and worker CPU per job
        171 / 143 / 165 µs against 130 / 113 / 144 (1,250 zone visits instead of 1,570); one
        tenant, whose visits are already full (``dequeue_max``), the same within noise. The
        fairness figure (the last of 100 one-job tenants queued behind 10,000 jobs of one,
        concurrency 1) started after 105-116 jobs instead of 104. Slow handlers keep one
        each: a job leased here waits for a free worker while another consumer could run
        it.

        Fifteen rather than three (issue 10, on a faster machine, where a worker process had
        become bound by its commits, not its Python): each visit, and each settle of what it
        leased, is a commit whose cost (its fsync, two write calls for each WAL frame of every
        page it changed) the jobs it carries share, and the scanner leases once half the
        table is free. 20,000 no-op jobs over 1,000 tenants, one process of concurrency 16:
        84 jobs a commit instead of 25, 28.7-32.7k jobs/s against 22-24k, worker CPU 29-34
        µs a job against 37-46 (seven: 37 a commit, 26.6-28.1k jobs/s); with ``dequeue_max``
        128, one tenant commits 63-69 jobs at a time instead of 18 (41k jobs/s against
        22-26k). A quick job waits behind at most 15 others of its worker: about 30 ms at the
        2 ms bound, under 1 ms for a no-op.
        """
        if self.prefetch is not None:
            return min(self.prefetch, workers)
        mean = self.handler_mean
        if mean is not None and mean < QUICK_HANDLER:
            return QUICK_PREFETCH * workers
        return workers

    def free(self) -> int:
        """How many more jobs the scanner may lease now."""
        workers = self.workers_left()
        return workers + self._prefetch(workers) - len(self.entries)

    def wants_more(self) -> bool:
        """Whether the scanner should lease now: while jobs are in flight, only once as many
        slots are free as the prefetch allows (at most half the slots), so a dequeue (and
        later the settle of what it leased) carries a batch instead of a job or two; no
        worker waits for it, since the jobs in flight still fill every worker. Measured on
        a no-op drain of one tenant (concurrency 16): 23 jobs per dequeue instead of 15, a
        third fewer dequeue commits and a fifth fewer settle commits per job."""
        free = self.free()
        if free <= 0:
            return False
        if not self.entries:
            return True
        workers = self.workers_left()
        prefetch = self._prefetch(workers)
        return free >= max(1, min(prefetch, (workers + prefetch) // 2))

    def add(self, running: Running) -> None:
        self.entries[running.key] = running

    def add_many(self, runs: list[Running]) -> None:
        """``add`` for each of ``runs`` (a zone visit's jobs)."""
        entries = self.entries
        for running in runs:
            entries[running.key] = running

    def remove(self, running: Running) -> None:
        self.remove_many((running,))

    def remove_many(self, runs: tuple[Running, ...] | list[Running]) -> None:
        entries = self.entries
        for running in runs:
            # one dict operation a job; the rare other run of the same job (a retry leased
            # here meanwhile) goes back in
            held = entries.pop(running.key, None)
            if held is not running and held is not None:
                entries[running.key] = held
            running.settled = True
        # Wake the scanner only once it would lease (``wants_more``), or the table is empty
        # (a drain may be done): a wake-up per settled job cost the scanner thread a switch
        # each and found too few slots to lease.
        if not self.entries or self.wants_more():
            self.cond.notify_all()

    def claim_outcome(self, running: Running, kind: OutcomeKind) -> bool:
        """The first outcome of a run wins (a timeout or a release may beat the handler)."""
        if running.outcome_kind is not None:
            return False
        running.outcome_kind = kind
        return True

    def unsettled(self) -> list[Running]:
        return [r for r in self.entries.values() if not r.settled]

    def watching_deadlines(self) -> bool:
        return any(r.deadline is not None for r in self.entries.values())
