"""Queue settings, their defaults (DESIGN.md §6) and validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import Any

from quick_queue.errors import ConfigurationError, UnknownSetting


@dataclass(frozen=True)
class Settings:
    """Every knob of a ``JobQueue``; pass any of them as keyword arguments to it."""

    item_lease: float = 30.0
    """Seconds a dequeued job stays leased to its consumer without an extension."""
    extend_every: float | None = None
    """Seconds between lease extensions of running jobs (default: a third of item_lease)."""
    zone_lease: float = 1.0
    """Seconds a consumer holds a zone while it picks jobs from it."""
    peek_max: int = 300
    """Due pointers a scanner reads per scan. DESIGN.md starts at 100. A consumer alone picks
    zones at random among these; consumers that share the queue each take the ones at home
    with them first (docs/design.md, home zones). Chosen when every consumer picked at random:
    16 consumer processes over 1,000 due zones lost 6.2 % of their visits to races choosing
    among 100 against 3.3 % among 300 (scripts/bench.py races)."""
    selection_max: int = 10
    """Zones a scanner tries per scan at most."""
    selection_frac: float = 0.1
    """Fraction of the peeked zones a scanner tries (at least one, at most selection_max)."""
    dequeue_max: int = 128
    """Jobs taken from one zone per visit (also bounded by the consumer's free slots: 16 a worker
    while handlers are quick, 2 otherwise). DESIGN.md starts at 10. Each visit, and each settle
    of what it took, is one commit, whose cost the jobs it carries share: at 128 one busy zone
    drains at 42k no-op jobs/s from one process, against 22-26k at 32 (63 jobs a commit instead
    of 18). Fairness is unchanged: zones are still picked at random (while slots are free, one
    dequeue transaction takes the next picked zones too, so many small zones share a commit)."""
    promote_max: int = 100
    """Due scheduled jobs and expired leases moved to ready per zone visit."""
    min_inactive: float = 30.0
    """Seconds an empty zone keeps its pointer before it is collected."""
    pointer_slack: float = 0.002
    """An enqueue moves a zone's pointer earlier only if that gains more than this (seconds)."""
    max_retries: int = 3
    """Default retries after the first run (a failing job runs at most max_retries + 1 times)."""
    max_snoozes: int = 100
    """Snoozes allowed per job before it is dead-lettered."""
    backoff_base: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap: float = 3600.0
    backoff_jitter: float = 0.2
    """Retry n waits min(cap, base * factor**(n-1)), +/- this fraction at random."""
    scan_interval: float = 0.1
    """Longest idle wait between scans; commits to the store wake idle consumers sooner."""
    shutdown_grace: float = 10.0
    """Seconds running jobs get to finish on shutdown before their leases are released."""
    completion_batch: int = 512
    """Most job outcomes settled in one transaction."""
    default_priority: int = 100
    """Priority of jobs that name none (lower runs first; 0..1000)."""
    keep_result: float = 0.0
    """Seconds a finished job (its state, timings, returned value, last error) is kept for
    ``get_job`` and ``queue.result`` when its handler's ``@job(keep_result=...)`` says
    nothing; 0 keeps nothing (the default: a completed job leaves no trace). A timedelta is
    taken too."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_number(f.name, getattr(self, f.name), f.type)
        positive = ("item_lease", "zone_lease", "backoff_base", "backoff_cap", "scan_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("peek_max", "selection_max", "dequeue_max", "promote_max",
                     "completion_batch"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_retries", "max_snoozes", "min_inactive", "pointer_slack",
                     "shutdown_grace", "keep_result"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.selection_frac <= 1:
            raise ConfigurationError(
                f"selection_frac must be in (0, 1], got {self.selection_frac!r}")
        if not 0 <= self.backoff_jitter < 1:
            raise ConfigurationError(
                f"backoff_jitter must be in [0, 1), got {self.backoff_jitter!r}")
        if self.backoff_factor < 1:
            raise ConfigurationError(
                f"backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if self.extend_every is not None and not 0 < self.extend_every < self.item_lease:
            raise ConfigurationError(
                f"extend_every must be > 0 and shorter than item_lease ({self.item_lease:g} s), "
                f"got {self.extend_every!r}"
            )
        if not 0 <= self.default_priority <= MAX_PRIORITY:
            raise ConfigurationError(
                f"default_priority must be in 0..{MAX_PRIORITY}, got {self.default_priority!r}")

    @property
    def extend_interval(self) -> float:
        return self.extend_every if self.extend_every is not None else self.item_lease / 3

    @classmethod
    def build(cls, **overrides: Any) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UnknownSetting(
                f"unknown queue setting(s): {', '.join(unknown)}; the settings are "
                f"{', '.join(sorted(known))} (see help(quick_queue.Settings))"
            )
        keep = overrides.get("keep_result")
        if isinstance(keep, timedelta):
            overrides["keep_result"] = keep.total_seconds()
        return cls(**overrides)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_PRIORITY = 1000


def _check_number(name: str, value: object, annotation: object) -> None:
    """A setting is a finite number of its field's kind (an int field takes only ints)."""
    if value is None and "None" in str(annotation):
        return
    wants_int = str(annotation).startswith("int")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (wants_int and not isinstance(value, int)) or not math.isfinite(
        float(value)  # type: ignore[arg-type]  # a number: checked just above
    ):
        what = "an integer" if wants_int else "a finite number"
        raise ConfigurationError(f"{name} must be {what}, got {value!r}")
