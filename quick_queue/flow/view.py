"""A consumer's cached view of the flow-control keys, and what the scanner does with it.

The whole ``flow/`` range (schedules and pauses) is read with one snapshot range read at most
once per ``scan_interval``; a queue that uses none of it pays that one read of an empty range
per interval and per consumer, and nothing per zone visit. Changes (a pause, a new schedule)
therefore reach every worker within one scan interval.
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from dataclasses import dataclass, field

from quick_queue.context import QueueContext
from quick_queue.core.pauses import park_zone
from quick_queue.core.periodic import decode, tick
from quick_queue.flow.schedule import Schedule, planner
from quick_queue.jobs import Registry
from quick_queue.keys import unpack
from quick_queue.kv.api import Transaction
from quick_queue.models import to_us
from quick_queue.producer import Producer

log = logging.getLogger("quick_queue.worker")
READ_LIMIT = 10_000


@dataclass
class FlowState:
    paused_tenants: frozenset[str] = frozenset()
    paused_topics: frozenset[str] = frozenset()
    cursors: dict[str, int] = field(default_factory=dict)  # schedule name -> cursor
    weights: dict[str, float] = field(default_factory=dict)  # tenants not weighing 1
    capped: frozenset[str] = frozenset()  # topics with a max running
    limited: frozenset[str] = frozenset()  # topics with a rate limit


def read_state(tr: Transaction, prefix: bytes) -> FlowState:
    rows = tr.snapshot.get_range(prefix, prefix + b"\xff", limit=READ_LIMIT)
    tenants, topics, cursors, weights, capped, limited = set(), set(), {}, {}, set(), set()
    for key, raw in rows:
        kind, name = unpack(key, len(prefix))[:2]
        if kind == "tenant":
            tenants.add(str(name))
        elif kind == "topic":
            topics.add(str(name))
        elif kind == "s":
            cursors[str(name)] = decode(raw)[0]
        elif kind == "weight":
            weights[str(name)] = float(raw)
        elif kind == "cap":
            capped.add(str(name))
        elif kind == "rate":
            limited.add(str(name))
    return FlowState(frozenset(tenants), frozenset(topics), cursors, weights, frozenset(capped),
                     frozenset(limited))


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
        return self.state

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
