"""The scanner: finds due zones, takes a few at random and leases their jobs (one transaction
per zone visit), then hands the jobs to the worker pool.

A zone whose visit fails for any reason other than a lost race is logged (once per zone and
kind of error) and skipped until the next scan: one bad zone never stops a worker. A
transient storage error (disk full, a retryable engine error) pauses the whole scanner with a
growing backoff instead; it resumes on its own when the store does.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from quick_queue.consumer.backoff import StorageBackoff, is_transient
from quick_queue.consumer.executor import unknown_topic_outcome
from quick_queue.consumer.inflight import InFlight, Running
from quick_queue.consumer.peers import OPEN_AFTER, STEAL_DEPTH, PeerView
from quick_queue.context import QueueContext
from quick_queue.core.caps import take_slots
from quick_queue.core.dequeue import ZoneNotDue, dequeue, ready_at_least
from quick_queue.core.pauses import hold_taken
from quick_queue.core.pointers import (
    due_entry,
    due_keys_after,
    newest_due_keys,
    scan_due_keys,
)
from quick_queue.core.pointers import next_vesting as next_vesting_of
from quick_queue.core.rates import take_turns
from quick_queue.errors import UnreadableRecord
from quick_queue.flow.view import FlowView, share_of, weighted_pick
from quick_queue.jobs import JobSpec
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KVError, is_retryable, maybe_committed
from quick_queue.meta import JobMeta
from quick_queue.models import VALUE_LIMIT, JobRecord, LeasedJob, to_us
from quick_queue.outcomes import Outcome
from quick_queue.telemetry import Counters

log = logging.getLogger("quick_queue.worker")
_T = TypeVar("_T")
CAP_RETRY_US = 200_000  # a job of a topic at its cap looks for a slot again this much later
#: Retryable errors (1007, 1009, 1020, ...) met by the reads of this many zone visits in a row
#: are passed over like lost races; one more is an outage (``StorageBackoff``).
VISIT_RETRIES = 5
LEFTOVER_AGE = 0.05  # seconds the zones a scan drew but did not visit are visited without a scan
#: Jobs a worker that one zone may take in a visit while other zones are due too. Why a bound
#: (issue 10): with quick handlers a consumer leases up to 16 jobs a worker
#: (``consumer.inflight``), and a zone took every free slot it had jobs for, so a tenant with a
#: backlog took whole table-fills of a consumer with few workers: the peers' fairness workload
#: (10,000 jobs of one tenant ahead of 100 one-job tenants, concurrency 1) started the last
#: one-job tenant after 127, 145 and 228 jobs, against 103-119 with the shallower table; at
#: four a worker 115-127, at two 109-115. Two split the zones of QuiCK's shape (20 jobs each)
#: over two visits for a consumer of 8 workers (22-23k no-op jobs/s from 2 processes x 8 over
#: 1,000 tenants, against 28-29k at four). The only due zone (one busy tenant) takes every
#: free slot.
ZONE_SHARE = 4
#: The most bytes of job records one visit transaction rewrites (each leased job's record).
#: With quick handlers a visit leases up to 16 jobs a worker (``dequeue_max`` 128 from one
#: zone, more over several), and records of up to 100 kB: without a bound a visit of large
#: jobs would pass FoundationDB's 10 MB transaction limit and fail every time. FoundationDB
#: advises under 1 MB, as for the settler's batches (``core.settle.BATCH_BYTES``). A zone's
#: lease stops before the record that would pass the room left (``core.dequeue``), and a
#: visit takes another zone only while a record of the largest size still fits.
VISIT_BYTES = 800_000


class Scanner:
    def __init__(
        self, context: QueueContext, inflight: InFlight, counters: Counters,
        stopping: threading.Event, *, run: Callable[[list[Running]], None],
        settle: Callable[[Running, Outcome], None],
    ) -> None:
        self.context = context
        self.inflight = inflight
        self.counters = counters
        self.stopping = stopping
        self._run = run  # hands jobs to the workers
        self._settle = settle  # settles a job that dies without running
        self._zone_errors: set[tuple[str, str]] = set()  # (tenant, error type) logged once
        self.backoff = StorageBackoff(stopping)
        # Its own random source (seeded from the queue's): how many times an idle scanner
        # draws depends on timing, and must not shift the queue's seeded backoff jitter.
        self.rng = random.Random(context.rng.getrandbits(64))
        self.flow = FlowView(context)  # schedules and pauses, read once per scan interval
        # zones the last scan drew but had no free slots for, and when (monotonic)
        self._leftover: list[tuple[str, float]] = []
        self._leftover_at = 0.0
        self._failed_visits = 0  # visits in a row whose reads met a retryable error
        self._due_zones = 2  # due zones the last scan found (more than one until known)
        # the zones this scanner visited since its last draw: the next draw passes them over
        # while other due zones are drawn (``_pick``)
        self._visited: set[str] = set()
        # which due zones are this consumer's own among the live consumers (``peers``); the
        # runner names its worker record, a drain keeps none (every zone its own)
        self.peers = PeerView(context.name)

    def loop(self, deadline: float | None, until_idle: bool) -> bool:
        """Scan until stopped (or, with ``until_idle``, until no due work is left); True when
        ``deadline`` (monotonic) passed first."""
        while not self.stopping.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return True
            if not self._wait_for_slot():
                continue
            try:
                got, due, wait = self.scan_once()
            except Exception as error:  # noqa: BLE001 - see StorageBackoff.failed
                self.backoff.failed(error)
                continue
            self.backoff.succeeded()
            if got:
                continue
            if until_idle:
                with self.inflight.cond:
                    busy = bool(self.inflight.entries)
                if not due and not busy:
                    return False
                if busy:
                    with self.inflight.cond:
                        self.inflight.cond.wait(0.005)
                    continue
            self.context.db.wait_for_change(wait)
        return False

    def _wait_for_slot(self) -> bool:
        with self.inflight.cond:
            if self.inflight.wants_more():
                return True
            self.inflight.cond.wait(self.context.settings.scan_interval)
            return False

    def scan_once(self) -> tuple[int, bool, float]:
        """One scan: (jobs leased, whether any zone was due, how long to wait if idle).

        The zones drawn by the last scan that it had no free slots left to visit are visited
        first, without a new scan, while they are at most ``LEFTOVER_AGE`` old: at 1,000 due
        zones a scan costs about 0.5 ms and a visit of a 20-job zone fills most of a
        consumer's free slots, so rescanning for each visit cost more than the visit's
        own dequeue (a zone no longer due is found out by the visit's pointer read)."""
        context, settings = self.context, self.context.settings
        now = to_us(context.db.store_time())  # leases and due times: the store's clock
        flow = self.flow.refresh()
        if flow.cursors:
            self.flow.tick_due(now)
        if self._leftover and time.monotonic() - self._leftover_at <= LEFTOVER_AGE:
            leftover, self._leftover = self._leftover, []
            got = self._visit_picked(
                [(tenant, share) for tenant, share in leftover
                 if tenant not in flow.paused_tenants], now)
            if got:
                return got, True, 0.0
        tr, keys, next_vesting = self._scan(now)
        if keys and self.peers.due():
            self._read_peers(tr, now)
        got, due = 0, bool(keys)
        self._due_zones = len(keys)
        if keys:
            picked = self._pick(keys, flow.paused_tenants, flow.weights, now, tr)
            if picked is None:  # a thief out of its slot (``peers``): look again soon
                if tr is not None:
                    tr.reset()
                return 0, True, 0.005
            due = bool(picked)
            got = self._visit_picked(picked, now, tr)
            if not got:
                # Nothing leased (the zones were taken, paused or not due after all): the
                # idle wait below needs the next vesting, read now rather than by every scan
                # (a scan that leases is followed by another at once, never by the wait):
                # one range read fewer per visit (issue 10).
                next_vesting = context.db.transact(next_vesting_of, context.layout, now)
        elif tr is not None:
            tr.reset()  # (read only: its snapshot let go now, not when collected)
        # Idle: jitter the wait so consumers do not scan in lockstep, but never past the next
        # pointer's time (a scheduled job starts on time).
        wait = settings.scan_interval * (0.8 + 0.4 * self.rng.random())
        if next_vesting is not None:
            wait = min(wait, max(0.0, (next_vesting - now) / 1e6))
        if due:  # due zones we could not take (leased by others): look again soon
            wait = min(wait, 0.005)
        return got, due, wait

    def _scan(self, now: int) -> tuple[Transaction | None, list[bytes], int | None]:
        """(the transaction that read them, the due entries' keys, the next vesting when
        none is due): the scan's snapshot read of the due index, made in the transaction the
        first zone's visit then uses (issue 10): one read snapshot a visit instead of two,
        which on the embedded engine saves its ``BEGIN``, version query and ``ROLLBACK``, and
        on FoundationDB a read version's round trip. The visit conflicts as before: a
        snapshot read adds no read conflict, and the visit's own reads add theirs. A
        retryable error of the read (a read version too old, a storage server behind) is
        answered by the retry loop in a transaction of its own, as before (None)."""
        context = self.context
        tr = context.db.create_transaction()
        try:
            # (the next vesting only when no zone is due: see scan_once's read below)
            keys, next_vesting = scan_due_keys(
                tr, context.layout, now, context.settings.peek_max, False)
        except KVError as error:
            if not is_retryable(error):
                raise
            tr.reset()
            keys, next_vesting = context.db.transact(
                scan_due_keys, context.layout, now, context.settings.peek_max, False)
            return None, keys, next_vesting
        return tr, keys, next_vesting

    def _read_peers(self, tr: Transaction | None, now: int) -> None:
        """Read the live consumers (``peers``) in the scan's snapshot, or one of its own."""
        self._read(lambda tr: self.peers.refresh(tr.snapshot, now / 1e6), tr)

    def _pick(
        self, keys: list[bytes], paused: frozenset[str], weights: dict[str, float], now: int,
        tr: Transaction | None = None,
    ) -> list[tuple[str, float]] | None:
        """The due zones to visit, drawn at random from the due entries ``keys`` (each with
        its share of a visit, see ``quick_queue.flow``); None when this consumer, a thief out
        of its stealing slot, takes nothing (``_steal``). Only the drawn keys are decoded,
        unless pauses or weights need every tenant."""
        layout = self.context.layout
        visited, self._visited = self._visited, set()
        if not paused and not weights:
            k = self._draws(len(keys))
            pool = keys
            if self.peers.count > 1:  # this consumer's own due zones, or the others' newest
                pool, stealing = self._own_or_newest(keys, k + len(visited), now, tr)
                if stealing:  # (see ``peers``: a thief's visit takes one zone, its slot's)
                    stolen = self._steal(pool, now, tr)
                    return None if stolen is None else [(due_entry(layout, stolen)[1], 1.0)]
            drawn = self.rng.sample(pool, min(len(pool), k + len(visited)))
            return _unvisited_first([due_entry(layout, key)[1] for key in drawn], visited, k)
        due = [due_entry(layout, key) for key in keys]
        if paused:
            due = self._without_paused(due, paused, now)
            if not due:
                return []
        k = self._draws(len(due))
        if weights:
            return weighted_pick(due, k, weights, self.rng)
        drawn_due = self.rng.sample(due, min(len(due), k + len(visited)))
        return _unvisited_first([tenant for _, tenant in drawn_due], visited, k)

    def _own_or_newest(
        self, keys: list[bytes], want: int, now: int, tr: Transaction | None
    ) -> tuple[list[bytes], bool]:
        """(the due entries to draw from, whether they are the others'), when other consumers
        share the queue (``peers``): this consumer's own among ``keys`` (the head of the due
        index), else its own in the next page when ``keys`` filled a page, else the newest
        quarter of the due entries (at least ``want``), which their owners reach last."""
        layout, peek_max = self.context.layout, self.context.settings.peek_max
        open_before = layout.due_until(now - OPEN_AFTER - 1)[1]
        homes = self.peers.homes(keys, want, open_before)
        if homes:
            return homes, False
        if len(keys) < peek_max:
            newest = keys[::-1]  # (the whole due index)
        else:
            more = self._read(lambda tr: due_keys_after(tr, layout, keys[-1], now, peek_max), tr)
            homes = self.peers.homes(more, want, open_before)
            if homes:
                return homes, False
            newest = self._read(lambda tr: newest_due_keys(tr, layout, now, peek_max), tr)
        return newest[:max(want, len(newest) // 4)], True

    def _steal(self, newest: list[bytes], now: int, tr: Transaction | None) -> bytes | None:
        """The entry of ``newest`` (the others' newest due entries) this consumer takes as a
        thief: its stealing slot's; past the entries, that zone only if it is deep, else none
        (see ``peers``)."""
        slot = self.peers.steal_slot(now)
        key = newest[slot % len(newest)]
        if slot < max(len(newest), 2):
            return key
        layout = self.context.layout
        tenant = due_entry(layout, key)[1]
        deep = self._read(
            lambda tr: ready_at_least(tr.snapshot, layout, tenant, STEAL_DEPTH), tr)
        return key if deep else None

    def _read(self, read: Callable[[Transaction], _T], tr: Transaction | None) -> _T:
        """``read(tr)`` in the scan's transaction ``tr``, or in one of its own with the retry
        loop when there is none or its read meets a retryable error (as ``_scan`` does): a
        read the scan adds must not turn a passing fault into an outage of the scanner."""
        if tr is not None:
            try:
                return read(tr)
            except KVError as error:
                if not is_retryable(error):
                    raise
        return self.context.db.transact(read)

    def _draws(self, due: int) -> int:
        settings = self.context.settings
        return min(settings.selection_max, max(1, math.ceil(due * settings.selection_frac)),
                   due)

    def _visit_picked(
        self, picked: list[tuple[str, float]], now: int, tr: Transaction | None = None
    ) -> int:
        """Visit the ``picked`` zones in order while slots are free; the ones left over are
        kept for the next scan (``scan_once``). ``tr``: the scan's transaction, for the first
        visit (``_scan``)."""
        got = n = 0
        while n < len(picked):
            with self.inflight.lock:
                free = self.inflight.free()
            if free <= 0 or self.stopping.is_set():
                self._leftover, self._leftover_at = picked[n:], time.monotonic()
                break
            taken, used = self._visit(picked[n:], free, now, tr)
            got, n, tr = got + taken, n + used, None
        if tr is not None:
            tr.reset()  # (no visit made: its snapshot let go now)
        return got

    def _without_paused(
        self, due: list[tuple[int, str]], paused: frozenset[str], now: int
    ) -> list[tuple[int, str]]:
        """Park the due zones of paused tenants (so no scanner loops over them) and leave
        them out of this scan."""
        self.flow.park([tenant for _, tenant in due if tenant in paused], now)
        return [(vesting, tenant) for vesting, tenant in due if tenant not in paused]

    def _visit(
        self, zones: list[tuple[str, float]], free: int, now: int, tr: Transaction | None = None
    ) -> tuple[int, int]:
        """Visit the first of ``zones`` and, while ``free`` slots are left, the next ones,
        in one transaction: (jobs leased, zones used). A zone of 1,000 tenants x 20 jobs
        gives a visit 13 jobs on average (slots free up 16 at a time), and each transaction
        costs the scanner its own commit; taking the next zone in the same transaction
        shares it (see ``_visit_zones``)."""
        claims = self.context.claims
        held: list[str] = []
        try:
            visit = self._visit_zones(zones, free, now, held, tr)
            self._failed_visits = 0
            return visit
        except Exception as error:
            if isinstance(error, KVError) and is_retryable(error):
                # A read of the visit met what FoundationDB's reads meet now and then (a
                # snapshot too old, a storage server behind): nothing was written, so the
                # visit is lost like a race, and the next scan draws again. Only a run of
                # them is an outage, worth the backoff and its log line (before, the first
                # one paused the scanner 0.1 s and logged "the store failed").
                self._failed_visits += 1
                if self._failed_visits <= VISIT_RETRIES:
                    self.counters.add("visit_retries")
                    return 0, max(1, len(held))
            if is_transient(error):
                raise  # the store, not the zone: the scanner backs off
            # nothing was committed; the last zone taken is the one whose visit failed (or
            # the commit of all failed: then it stands for them in the log)
            for tenant in held[-1:]:
                self._zone_failed(tenant, error)
            return 0, max(1, len(held))
        finally:
            self._visited.update(held)
            for tenant in held:
                claims.release(tenant)

    def _visit_zones(
        self, zones: list[tuple[str, float]], free: int, now: int, held: list[str],
        tr: Transaction | None = None,
    ) -> tuple[int, int]:
        """Take zones and lease up to ``free`` of their jobs in one transaction, tried once:
        a conflict means another consumer took one of them first (see ``core.dequeue``), and
        the visits of all of them are lost (rare with many zones; with one hot zone there is
        only one). The zones taken are appended to ``held`` (claimed in this process).
        ``tr``: a transaction that has made only snapshot reads (the scan's), else a new one."""
        context, settings = self.context, self.context.settings
        if tr is None:
            tr = context.db.create_transaction()
        tr.options.set_relaxed_durability()  # a lease undone by a power loss is taken again
        jobs: list[LeasedJob] = []
        used = visited = 0
        most = free  # (the only due zone: see ZONE_SHARE)
        if self._due_zones > 1:
            with self.inflight.lock:
                most = ZONE_SHARE * max(1, self.inflight.workers_left())
        room = VISIT_BYTES
        for tenant, share in zones:
            left = free - len(jobs)
            if left <= 0:
                break
            if jobs:  # (the first zone's visit starts empty)
                room = VISIT_BYTES - tr.get_approximate_size()
                if room < VALUE_LIMIT:  # (a zone's visit leases one job at least)
                    break
            used += 1
            count = min(left, settings.dequeue_max, most)
            if share < 1.0:  # a lighter tenant than another drawn (quick_queue.flow)
                count = share_of(count, share, self.rng)
                if count == 0:
                    continue
            if not context.claims.claim(tenant):
                self.counters.add("zone_busy_here")
                continue
            held.append(tenant)
            try:
                jobs += dequeue(
                    tr, context.layout, tenant, None, now, count=count,
                    item_lease=to_us(settings.item_lease), promote_max=settings.promote_max,
                    min_inactive=to_us(settings.min_inactive), new_token=context.new_token,
                    max_retries_of=self._max_retries_of, max_bytes=room,
                )
                visited += 1
            except ZoneNotDue:  # (nothing written for it)
                self.counters.add("zone_not_due")
        if not visited:
            return 0, used
        return self._commit_visit(tr, jobs, visited, now), used

    def _commit_visit(
        self, tr: Transaction, jobs: list[LeasedJob], zones: int, now: int
    ) -> int:
        context = self.context
        try:
            if jobs and self.flow.state.paused_topics:  # set aside jobs of paused topics
                jobs = hold_taken(tr, context.layout, jobs, self.flow.state.paused_topics)
            if jobs and self.flow.state.capped:  # slots of capped topics, or hand back
                jobs = take_slots(tr, context.layout, jobs, self.flow.state.capped, now,
                                  CAP_RETRY_US)
            if jobs and self.flow.state.limited:  # rate-limited topics: their turn, or back
                jobs = take_turns(tr, context.layout, jobs, self.flow.state.limited, now)
            tr.commit()
        except KVError as error:
            if not is_retryable(error):
                raise
            if maybe_committed(error) and jobs:
                # 1021: the commit may have happened. Our tokens in the records tell.
                self.counters.add("unknown_results")
                jobs = context.db.transact(self._still_ours, jobs)
            else:
                jobs = []  # not committed: nothing was leased
            if not jobs:
                self.counters.add("lease_races", zones)  # lost the race for the zones
                self.peers.forget()  # (views that differ make races: read them again)
                return 0
        self.counters.add("zone_visits", zones)
        self._accept(jobs)
        return len(jobs)

    def _zone_failed(self, tenant: str, error: Exception) -> None:
        self.counters.add("zone_errors")
        what = (tenant, type(error).__name__)
        if what not in self._zone_errors:
            self._zone_errors.add(what)
            log.error("zone %r: %s: %s (skipped; logged once per zone)", tenant,
                      type(error).__name__, error, exc_info=True)

    def _max_retries_of(self, topic: str) -> int | None:
        """The retry limit of ``topic``'s handler here (the job's own, if its producer fixed
        one, wins in ``core.dequeue``)."""
        spec = self.context.registry.get(topic)
        if spec is not None and spec.max_retries is not None:
            return spec.max_retries
        return self.context.settings.max_retries

    def _still_ours(self, tr: Transaction, jobs: list[LeasedJob]) -> list[LeasedJob]:
        zone_of = self.context.layout.zone
        raws = tr.snapshot.get_many([zone_of(j.tenant).item(j.record.job_id) for j in jobs])
        return [
            job for job, raw in zip(jobs, raws, strict=True)
            if raw is not None and _token_of(job.record.job_id, raw) == job.token
        ]

    def _accept(self, jobs: list[LeasedJob]) -> None:
        """Put the visit's jobs in the in-flight table (under one lock), then hand each to
        the workers, or settle it at once if it cannot run here (no handler for its topic)."""
        registry = self.context.registry
        spec_of = registry.get
        specs: dict[str, JobSpec | None] = {}  # topic -> its handler, asked once a visit
        runs = []
        for job in jobs:
            record = job.record
            topic = record.topic
            spec = specs[topic] if topic in specs else specs.setdefault(topic, spec_of(topic))
            runs.append(Running(job, JobMeta.of_record(job.tenant, record), spec))
        with self.inflight.lock:
            self.inflight.add_many(runs)
        unknown = [running for running in runs if running.spec is None]
        if not unknown:  # (every job of a visit has a handler here, but for a misrouted one)
            self._run(runs)
            return
        self._run([running for running in runs if running.spec is not None])
        for running in unknown:
            self._settle(running, unknown_topic_outcome(running.job, registry))


def _unvisited_first(tenants: list[str], visited: set[str], k: int) -> list[tuple[str, float]]:
    """The first ``k`` of ``tenants`` (a random draw of up to ``k + len(visited)``), those
    visited since the last draw moved last, each with a whole share of a visit.

    Why (issue 10's CI): a scan draws a tenth of the due zones, so with two due zones it
    draws one, at random. With quick handlers a visit of a zone with a backlog leases its
    share of a deep table (``ZONE_SHARE``: 16 jobs for 4 workers), and the scanner visits
    again as soon as slots are free: a one-job tenant due beside the backlog lost 1 draw in
    2 and waited behind 16 more of the backlog's jobs each time. The tutorial's latte once
    started after 104 of the stadium's espressos (a 1-in-64 tail). Drawing past the zones
    just visited makes the scanner go round the zones it can see, as QuiCK's random pick
    does on average; with one due zone, or when every due zone was just visited, the draw
    is the same as before. The cost is the decoding of as many more drawn keys as zones
    were visited (a few microseconds a scan)."""
    if visited:
        tenants = ([tenant for tenant in tenants if tenant not in visited]
                   + [tenant for tenant in tenants if tenant in visited])
    return [(tenant, 1.0) for tenant in tenants[:k]]


def _token_of(job_id: str, raw: bytes) -> str | None:
    try:
        return JobRecord.decode(job_id, raw).token
    except UnreadableRecord:
        return None  # not ours to run; the next visit buries it
