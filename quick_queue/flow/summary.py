"""What ``inspect`` and the read model show of flow control: pauses, schedules and weights
(one bounded read of each range; a queue that uses none reads a few empty ranges)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quick_queue.core.caps import list_caps
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


@dataclass(frozen=True)
class FlowSummary:
    paused: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    schedules: list[ScheduleInfo] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # tenants not weighing 1
    caps: dict[str, int] = field(default_factory=dict)  # topic -> max running
    rates: dict[str, int] = field(default_factory=dict)  # topic -> microseconds between leases

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "schedules": [s.to_dict() for s in self.schedules],
                "weights": self.weights, "max_running": self.caps,
                "rate_per_second": {t: 1e6 / us for t, us in self.rates.items()}}

    def lines(self) -> list[str]:
        """One line per kind of pause and per schedule (none for a queue using neither)."""
        out = [f"paused {kind}s: {', '.join(names)}"
               for kind, names in self.paused.items() if names]
        out += [f"schedule {info.describe()}" for info in self.schedules]
        if self.caps:
            out.append("max running: " + ", ".join(
                f"{topic}={cap}" for topic, cap in sorted(self.caps.items())))
        if self.rates:
            out.append("rate limits: " + ", ".join(
                f"{topic}={1e6 / us:g}/s" for topic, us in sorted(self.rates.items())))
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
                       list_caps(tr.snapshot, layout), list_rates(tr.snapshot, layout))


def read_flow(db: Database, layout: Layout) -> FlowSummary:
    result: FlowSummary = db.transact(_read, layout)
    return result
