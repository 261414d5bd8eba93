"""What ``inspect`` and the read model show of flow control: pauses, schedules, weights, caps
and rate limits (of topics, in force: the queue's setting else the handler's declaration; and
of tenants); one bounded read of each range, so a queue that uses none reads a few empty
ranges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quick_queue.core import caps, dependencies, rates
from quick_queue.core.caps import list_caps, list_kind
from quick_queue.core.pauses import list_pauses, list_weights
from quick_queue.core.periodic import list_schedules
from quick_queue.core.rates import list_rates
from quick_queue.flow.schedule import Schedule
from quick_queue.keys import Layout
from quick_queue.kv.api import Database, Transaction
from quick_queue.models import to_datetime


@dataclass(frozen=True)
class ScheduleInfo:
    schedule: Schedule
    next_tick: float  # seconds since the epoch (store time)

    def to_dict(self) -> dict[str, Any]:
        s = self.schedule
        return {
            "name": s.name, "tenant": s.tenant, "topic": s.topic, "cron": s.cron,
            "every_seconds": None if s.every_us is None else s.every_us / 1e6, "tz": s.tz,
            "missed": s.missed,
            "next_tick": to_datetime(round(self.next_tick * 1e6)).isoformat(),
        }

    def describe(self) -> str:
        s = self.schedule
        when = f"cron {s.cron!r}" + (f" ({s.tz})" if s.tz else "") if s.cron is not None \
            else f"every {s.every_us / 1e6:g} s" if s.every_us is not None else "?"
        nxt = to_datetime(round(self.next_tick * 1e6)).strftime("%Y-%m-%d %H:%M:%S")
        return f"{s.name}: {s.tenant}/{s.topic} {when}, next {nxt} UTC"


WAITING_MAX = 10_000


def rate_text(interval_us: int) -> str:
    """An interval between leases as a rate: "100/s", "30/min", "5/h"."""
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600)):
        count = seconds * 1e6 / interval_us
        if count >= 1:
            return f"{count:.4g}/{unit}"
    return f"{3600 * 1e6 / interval_us:.4g}/h"


@dataclass(frozen=True)
class FlowSummary:
    paused: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    schedules: list[ScheduleInfo] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # tenants not weighing 1
    caps: dict[str, int] = field(default_factory=dict)  # topic -> max running
    rates: dict[str, int] = field(default_factory=dict)  # topic -> microseconds between leases
    tenant_caps: dict[str, int] = field(default_factory=dict)  # tenant -> max running
    tenant_rates: dict[str, int] = field(default_factory=dict)  # tenant -> us between leases
    waiting: int = 0  # jobs waiting for others (enqueue(after=...)), counted up to WAITING_MAX

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "schedules": [s.to_dict() for s in self.schedules],
                "weights": self.weights, "max_running": self.caps,
                "rate_per_second": {t: 1e6 / us for t, us in self.rates.items()},
                "tenant_max_running": self.tenant_caps,
                "tenant_rate_per_second": {t: 1e6 / us for t, us in self.tenant_rates.items()},
                "waiting_for_other_jobs": self.waiting}

    def lines(self) -> list[str]:
        """One line per kind of pause and per schedule (none for a queue using neither)."""
        out = [f"paused {kind}s: {', '.join(names)}"
               for kind, names in self.paused.items() if names]
        out += [f"schedule {info.describe()}" for info in self.schedules]
        for what, limits in (("max running", self.caps),
                             ("tenant max running", self.tenant_caps)):
            if limits:
                out.append(f"{what}: " + ", ".join(
                    f"{name}={cap}" for name, cap in sorted(limits.items())))
        for what, intervals in (("rate limits", self.rates),
                                ("tenant rate limits", self.tenant_rates)):
            if intervals:
                out.append(f"{what}: " + ", ".join(
                    f"{name}={rate_text(us)}" for name, us in sorted(intervals.items())))
        if self.waiting:
            more = "+" if self.waiting > WAITING_MAX else ""
            out.append(f"waiting for other jobs: {min(self.waiting, WAITING_MAX)}{more}")
        if self.weights:
            out.append("weights: " + ", ".join(
                f"{tenant}={weight:g}" for tenant, weight in sorted(self.weights.items())))
        return out


def _read(tr: Transaction, layout: Layout) -> FlowSummary:
    paused: dict[str, list[str]] = {"tenant": [], "topic": []}
    for kind, name in list_pauses(tr.snapshot, layout):
        paused[kind].append(name)
    infos = [ScheduleInfo(Schedule.decode(raw), cursor / 1e6)
             for _, cursor, raw in list_schedules(tr.snapshot, layout)]
    return FlowSummary(paused, infos, list_weights(tr.snapshot, layout),
                       list_caps(tr.snapshot, layout), list_rates(tr.snapshot, layout),
                       list_kind(tr.snapshot, layout, caps.TENANT),
                       list_kind(tr.snapshot, layout, rates.TENANT), _waiting(tr, layout))


def _waiting(tr: Transaction, layout: Layout) -> int:
    """How many jobs wait for others, counted up to WAITING_MAX + 1 (none read at all for a
    queue that never used ``after=``)."""
    if tr.snapshot.get(dependencies.flag_key(layout)) is None:
        return 0
    begin = dependencies.waiting_prefix(layout)
    return len(tr.snapshot.get_range(begin, begin + b"\xff", limit=WAITING_MAX + 1))


def read_flow(db: Database, layout: Layout) -> FlowSummary:
    result: FlowSummary = db.transact(_read, layout)
    return result
