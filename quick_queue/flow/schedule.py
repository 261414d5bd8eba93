"""A periodic schedule's definition and the plan of its ticks (stored by ``core.periodic``).

Times are microseconds since the epoch on the store's clock. A schedule is ``every`` N seconds
(ticks at whole multiples of the period since the epoch, so every worker computes the same
ticks) or a ``cron`` expression (parsed by cronsim, in ``tz``, UTC by default).

Missed ticks: a tick ``grace`` or more late when a worker first sees it was missed (no worker
ran then). ``missed="skip"`` drops those; ``missed="run_once"`` enqueues one job for all of
them (keyed by the first missed tick). Ticks within the grace run each, at most
``MAX_ON_TIME`` per transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from quick_queue.core.enqueue import NewJob
from quick_queue.core.periodic import Planner
from quick_queue.errors import InvalidArgument

MISSED = ("skip", "run_once")
MIN_EVERY_US = 100_000  # 0.1 s: shorter periods would be ticked late by the scan loop anyway
MAX_GRACE_US = 60_000_000
MIN_GRACE_US = 1_000_000
MAX_ON_TIME = 100
BATCH = 1_000_000  # bytes of payload enqueued by one tick transaction at most
JOB_OVERHEAD = 1_000  # bytes a job's keys and header add, generously


@dataclass(frozen=True)
class Schedule:
    name: str
    tenant: str
    topic: str
    payload: Any = None
    cron: str | None = None
    every_us: int | None = None
    tz: str | None = None
    missed: str = "skip"
    priority: int | None = None  # fixed when defined: the handler's there, if it had one
    max_retries: int | None = None

    @classmethod
    def build(
        cls, name: str, *, tenant: str, topic: str, payload: Any = None, cron: str | None = None,
        every: float | timedelta | None = None, tz: str | None = None, missed: str = "skip",
    ) -> Schedule:
        """A checked schedule: each mistake is an ``InvalidArgument`` naming it."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"a schedule name must be a non-empty string, got {name!r}")
        if (cron is None) == (every is None):
            raise InvalidArgument(f"schedule {name!r}: give exactly one of cron= or every=")
        if missed not in MISSED:
            raise InvalidArgument(
                f"schedule {name!r}: missed= must be 'skip' or 'run_once', not {missed!r}"
            )
        every_us = None
        if every is not None:
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise InvalidArgument(f"schedule {name!r}: every= takes seconds or a timedelta")
            every_us = round(seconds * 1e6)
            if every_us < MIN_EVERY_US:
                raise InvalidArgument(f"schedule {name!r}: every= must be at least 0.1 s")
            if tz is not None:
                raise InvalidArgument(f"schedule {name!r}: tz= applies to cron= only")
        schedule = cls(name, tenant, topic, payload, cron, every_us, tz, missed)
        if cron is not None:
            schedule.after(0)  # parses the expression and the zone: errors surface now
        return schedule

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Schedule:
        return cls(**json.loads(raw))

    def _zone(self) -> ZoneInfo | None:
        if self.tz is None:
            return None
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise InvalidArgument(f"schedule {self.name!r}: unknown time zone {self.tz!r}") \
                from error

    def after(self, at: int) -> int:
        """The first tick strictly after ``at``."""
        if self.every_us is not None:
            return (at // self.every_us + 1) * self.every_us
        assert self.cron is not None
        start = datetime.fromtimestamp(at / 1e6, self._zone() or UTC)
        try:
            nxt = next(iter(CronSim(self.cron, start)))
        except (CronSimError, StopIteration) as error:
            raise InvalidArgument(
                f"schedule {self.name!r}: bad cron expression {self.cron!r}: {error}"
            ) from error
        return round(nxt.timestamp() * 1e6)

    def grace(self) -> int:
        period = self.every_us if self.every_us is not None else MAX_GRACE_US
        return max(MIN_GRACE_US, min(period, MAX_GRACE_US))

    def due_ticks(self, cursor: int, now: int, limit: int = MAX_ON_TIME) -> tuple[list[int], int]:
        """The ticks to enqueue (at most ``limit``) for a cursor at or before ``now``, and the
        next cursor: past ``now``, or the first tick left over when ``limit`` cut the list
        (the next transaction enqueues it)."""
        late = now - self.grace()
        ticks: list[int] = []
        if cursor <= late and self.missed == "run_once":
            ticks.append(cursor)  # one job stands for every missed tick
        t = cursor if cursor > late else self.after(late)
        while t <= now:
            if len(ticks) >= limit:
                return ticks, t
            ticks.append(t)
            t = self.after(t)
        return ticks, t

    def job_key(self, tick: int) -> str:
        return f"periodic:{self.name}:{tick}"


def planner(make_job: Callable[[Schedule, int, int], NewJob]) -> Planner:
    """A ``core.periodic.Planner`` whose jobs are made by ``make_job(schedule, tick, now)``."""

    def plan(definition: bytes, cursor: int, now: int) -> tuple[list[NewJob], int]:
        schedule = Schedule.decode(definition)
        # Ticks per transaction are bounded by bytes too (DESIGN.md §8: well under 1 MB), so a
        # large payload on a short period never makes one commit too big for FoundationDB.
        size = len(make_job(schedule, cursor, now).payload) + JOB_OVERHEAD
        ticks, after = schedule.due_ticks(cursor, now, max(1, min(MAX_ON_TIME, BATCH // size)))
        return [make_job(schedule, t, now) for t in ticks], after

    return plan
