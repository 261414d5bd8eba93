"""The queue context: everything the runtime and the read views need to know about one queue,
without the ``JobQueue`` facade.

``JobQueue`` owns one (``queue.context``) and delegates to it; the consumer, the process
supervisor and the read views take a ``QueueContext``, so none of them imports ``queue.py``
back (the facade sits on top of them, not beside them).

Replaying a randomized run: ``seed`` seeds ``rng`` (backoff jitter, the scanner's choice of
zones); ``new_token`` makes lease tokens and ``new_job_id`` job ids, so a test can pass
seeded makers of its own.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from quick_queue import models
from quick_queue.clock import Clock, StoreClock, SystemClock
from quick_queue.events import EventStream
from quick_queue.ids import IdMaker
from quick_queue.jobs import Registry
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from quick_queue.settings import Settings


class ZoneClaims:
    """The zones this process's consumers are visiting right now: a second local consumer
    skips a claimed zone instead of racing (and aborting) on the same pointer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._zones: set[str] = set()

    def claim(self, tenant: str) -> bool:
        """Claim ``tenant``'s zone; False if another local consumer holds it."""
        with self._lock:
            if tenant in self._zones:
                return False
            self._zones.add(tenant)
            return True

    def release(self, tenant: str) -> None:
        with self._lock:
            self._zones.discard(tenant)

    def __contains__(self, tenant: object) -> bool:
        with self._lock:
            return tenant in self._zones


@dataclass(eq=False)
class QueueContext:
    """One queue on one database connection.

    ``db``: the connection. ``name``/``layout``: the queue's name and its keys. ``settings``,
    ``clock``, ``registry``: what the queue was built with. ``claims``: this process's zone
    claims. ``seed``/``rng``: the seeded source of jitter. ``new_token``/``new_job_id``: the
    makers of lease tokens and job ids. ``events``: the queue's event stream
    (``quick_queue.events``; every consumer of this queue in this process emits into it).
    """

    db: Database
    name: str
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    registry: Registry = field(default_factory=Registry)
    seed: int | None = None
    new_token: Callable[[], str] = models.new_token
    new_job_id: Callable[[], str] = models.new_job_id
    layout: Layout = field(init=False)
    claims: ZoneClaims = field(init=False, default_factory=ZoneClaims)
    rng: random.Random = field(init=False)
    events: EventStream = field(init=False, default_factory=EventStream)

    def __post_init__(self) -> None:
        self.layout = Layout(self.name)
        self.rng = random.Random(self.seed)
        if self.seed is not None:
            # Replayable ids and tokens too, unless the caller brought makers of its own. (Two
            # live workers must never share a seed: they would make the same lease tokens.)
            ids = IdMaker(self.seed)
            if self.new_token is models.new_token:
                self.new_token = self._seeded_token = ids.token
            if self.new_job_id is models.new_job_id:
                self.new_job_id = self._seeded_job_id = ids.job_id

    def with_db(self, db: Database, *, seed: int | None = None) -> QueueContext:
        """The same queue (name, settings, clock, handlers, id makers) on the connection
        ``db``, with claims and a random source of its own: a forked process must not share
        a lock another thread may have held at the fork. ``seed`` overrides the seed (a
        supervisor gives each child its own, derived from the queue's)."""
        # the store's time is read through the connection in use
        clock = StoreClock(db) if isinstance(self.clock, StoreClock) else self.clock
        # Makers this context seeded itself are seeded afresh from the new seed (a child
        # process must not repeat its siblings' tokens); makers given by the caller are kept.
        seeded = getattr(self, "_seeded_token", None), getattr(self, "_seeded_job_id", None)
        other = QueueContext(
            db, self.name, self.settings, clock, Registry(self.registry.handlers()),
            self.seed if seed is None else seed,
            models.new_token if self.new_token == seeded[0] else self.new_token,
            models.new_job_id if self.new_job_id == seeded[1] else self.new_job_id,
        )
        other.events = self.events  # subscribers see the queue's events on any connection
        return other
