"""A consumer's cached view of the flow-control keys, and what the scanner does with it.

The whole ``flow/`` range (schedules and pauses) is read with one snapshot range read at most
once per ``scan_interval``; a queue that uses none of it pays that one read of an empty range
per interval and per consumer, and nothing per zone visit. Changes (a pause, a new schedule)
therefore reach every worker within one scan interval.

A worker also publishes its handlers' declarations (``@job(max_running=..., rate_limit=...)``)
at its first read: it writes ``flow/dcap/{topic}`` and ``flow/drate/{topic}`` where they differ
from what its handlers declare (clearing a declaration its handler no longer makes), so the
last worker started wins for a topic; a queue-level setting still wins over any declaration
(``core.caps``).
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from dataclasses import dataclass, field

from quick_queue.context import QueueContext
from quick_queue.core import caps, dependencies, rates
from quick_queue.core.caps import Targets
from quick_queue.core.pauses import park_zone
from quick_queue.core.periodic import decode, tick
from quick_queue.flow.schedule import Schedule, planner
from quick_queue.jobs import Registry
from quick_queue.keys import Layout, unpack
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us
from quick_queue.producer import Producer

log = logging.getLogger("quick_queue.worker")
READ_LIMIT = 10_000
RECONCILE_EVERY = 2.0  # seconds between a worker's passes over waiting jobs (if any)
RECONCILE_BATCH = 100  # waiting jobs a pass looks at


@dataclass
class FlowState:
    paused_tenants: frozenset[str] = frozenset()
    paused_topics: frozenset[str] = frozenset()
    cursors: dict[str, int] = field(default_factory=dict)  # schedule name -> cursor
    weights: dict[str, float] = field(default_factory=dict)  # tenants not weighing 1
    capped: Targets = field(default_factory=Targets)  # topics and tenants with a max running
    limited: Targets = field(default_factory=Targets)  # topics and tenants with a rate limit
    declared: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, topic) -> n
    dependencies: bool = False  # the queue has used enqueue(after=...)


_CAPS = {caps.QUEUE: "topic", caps.DECLARED: "topic", caps.TENANT: "tenant"}
_RATES = {rates.QUEUE: "topic", rates.DECLARED: "topic", rates.TENANT: "tenant"}


def read_state(tr: Transaction, prefix: bytes) -> FlowState:
    rows = tr.snapshot.get_range(prefix, prefix + b"\xff", limit=READ_LIMIT)
    tenants, topics, cursors, weights = set(), set(), {}, {}
    capped: dict[str, set[str]] = {"topic": set(), "tenant": set()}
    limited: dict[str, set[str]] = {"topic": set(), "tenant": set()}
    declared: dict[tuple[str, str], int] = {}
    for key, raw in rows:
        kind, name = (str(x) for x in unpack(key, len(prefix))[:2])
        if kind == "tenant":
            tenants.add(name)
        elif kind == "topic":
            topics.add(name)
        elif kind == "s":
            cursors[name] = decode(raw)[0]
        elif kind == "weight":
            weights[name] = float(raw)
        elif kind in _CAPS:
            capped[_CAPS[kind]].add(name)
        elif kind in _RATES:
            limited[_RATES[kind]].add(name)
        if kind in (caps.DECLARED, rates.DECLARED):
            declared[(kind, name)] = int(raw)
    return FlowState(
        frozenset(tenants), frozenset(topics), cursors, weights,
        Targets(frozenset(capped["topic"]), frozenset(capped["tenant"])),
        Targets(frozenset(limited["topic"]), frozenset(limited["tenant"])), declared,
        any(unpack(k, len(prefix))[0] == "deps" for k, _ in rows),
    )


def declarations(registry: Registry) -> dict[tuple[str, str], int | None]:
    """What this worker's handlers declare, for every topic it has a handler for (None: the
    handler declares nothing, so a stored declaration is cleared)."""
    out: dict[tuple[str, str], int | None] = {}
    for topic in registry.topics():
        spec = registry.get(topic)
        assert spec is not None
        out[(caps.DECLARED, topic)] = spec.max_running
        out[(rates.DECLARED, topic)] = spec.rate_interval
    return out


def publish(tr: Transaction, layout: Layout, changes: dict[tuple[str, str], int | None]) -> None:
    for (kind, topic), value in changes.items():
        if kind == caps.DECLARED:
            caps.set_cap(tr, layout, topic, value, caps.DECLARED)
        else:
            rates.set_rate(tr, layout, topic, value, rates.DECLARED)


def weighted_pick(
    due: list[tuple[int, str]], k: int, weights: dict[str, float], rng: random.Random
) -> list[tuple[str, float]]:
    """``k`` due tenants drawn without replacement with probability in proportion to their
    weights (Efraimidis and Spirakis: the k largest of u ** (1 / w)), in visiting order, each
    with its *share*: its weight over the largest weight drawn. The scanner takes that share
    of a visit's jobs, so a heavier tenant is visited first more often and takes more when
    both are visited; a tenant drawn alone takes a full visit (work-conserving)."""
    keyed = []
    for _, tenant in due:
        weight = weights.get(tenant, 1.0)
        keyed.append((rng.random() ** (1.0 / weight), tenant, weight))
    picked = heapq.nlargest(k, keyed)
    top = max(weight for _, _, weight in picked)
    return [(tenant, weight / top) for _, tenant, weight in picked]


def share_of(count: int, share: float, rng: random.Random) -> int:
    """``count * share`` rounded at random (up with the probability of its fraction), so
    small visits keep the proportion on average."""
    exact = count * share
    whole = int(exact)
    return whole + (1 if rng.random() < exact - whole else 0)


class FlowView:
    def __init__(self, context: QueueContext) -> None:
        self.context = context
        self.state = FlowState()
        self._read_at = -1e18  # monotonic time of the last read
        self._published = False  # this worker's handler declarations written (_publish)
        self._reconciled_at = -1e18  # monotonic time of the last reconcile pass
        self._cursor: bytes | None = None  # where the next reconcile pass starts
        # No registry: the job was checked against the handler when the schedule was defined,
        # and a worker without that handler must not warn about it at every tick.
        producer = Producer(Registry(), context.settings)
        self._plan = planner(
            lambda s, t, now: producer.new_job(
                s.tenant, s.topic, s.payload, now / 1e6, priority=s.priority,
                max_retries=s.max_retries, key=s.job_key(t),
            )
        )

    def refresh(self) -> FlowState:
        """The state, read again if it is older than one scan interval."""
        mono = time.monotonic()
        if mono - self._read_at >= self.context.settings.scan_interval:
            prefix = self.context.layout.flow_prefix
            self.state = self.context.db.transact(read_state, prefix)
            self._read_at = mono
            if not self._published:
                self._publish()
            if self.state.dependencies and mono - self._reconciled_at >= RECONCILE_EVERY:
                self._reconciled_at = mono
                self.reconcile()
        return self.state

    def reconcile(self) -> None:
        """Look at the next batch of waiting jobs (``core.dependencies.reconcile``): a parent
        that ended outside a settle (cancelled, out of leases, completed by a transactional
        handler) releases or buries them here, within a few passes."""
        layout, now = self.context.layout, to_us(self.context.db.store_time())
        slack = to_us(self.context.settings.pointer_slack)
        try:
            self._cursor = self.context.db.transact(
                dependencies.reconcile, layout, self._cursor or b"", RECONCILE_BATCH, now, slack
            )
        except Exception as error:  # noqa: BLE001 - the next pass tries again
            log.error("dependencies: %s: %s", type(error).__name__, error)

    def _publish(self) -> None:
        """Write what this worker's handlers declare where the store differs (once, at the
        first read: a worker changes handlers only by restarting)."""
        wanted = declarations(self.context.registry)
        changes = {k: v for k, v in wanted.items() if self.state.declared.get(k) != v}
        if changes:
            self.context.db.transact(publish, self.context.layout, changes)
            self.state = self.context.db.transact(read_state, self.context.layout.flow_prefix)
        self._published = True

    def tick_due(self, now: int) -> int:
        """Enqueue the due ticks of every schedule whose cached cursor has come (one
        transaction each; racing workers conflict on the cursor and only one enqueues)."""
        enqueued = 0
        slack = to_us(self.context.settings.pointer_slack)
        for name, cursor in list(self.state.cursors.items()):
            if cursor > now:
                continue
            try:
                count, after = self.context.db.transact(
                    tick, self.context.layout, name, now, self._plan, slack
                )
            except Exception as error:  # noqa: BLE001 - a bad schedule must not stop a worker
                log.error("schedule %r: %s: %s", name, type(error).__name__, error)
                self.state.cursors.pop(name, None)  # tried again after the next read
                continue
            enqueued += count
            if after is None:
                self.state.cursors.pop(name, None)
            else:
                self.state.cursors[name] = after
        return enqueued

    def park(self, tenants: list[str], now: int) -> None:
        """Park the due zones of paused tenants, so scanners stop seeing them due."""
        for tenant in tenants:
            self.context.db.transact(park_zone, self.context.layout, tenant, now)


__all__ = ["FlowState", "FlowView", "Schedule"]
