"""Job ids and lease tokens, random by default and replayable on request.

By default ids and tokens come from ``os.urandom`` (fast, and unique across processes). A
randomized test that fails must be replayable: ``seed_ids(seed)`` makes the module's makers
(``new_job_id``, ``new_token``, which the queue uses unless given others) draw from a
``random.Random(seed)`` and a counter instead of the clock, so the same seed gives the same
sequence of ids and tokens. An ``IdMaker(seed)`` is such a source of one's own, to inject
(``QueueContext(new_job_id=maker.job_id, new_token=maker.token)``, ``Producer(...,
new_job_id=maker.job_id)``, ``core.dequeue(new_token=maker.token)``).

A seeded maker is for tests and replays: two processes seeded alike make the same ids.
"""

from __future__ import annotations

import os
import random
import threading
import time


class IdMaker:
    """Job ids (24 hex characters that sort by creation) and lease tokens (16 hex).

    Unseeded: 14 hex of wall-clock microseconds, strictly increasing in the process, and 10
    random hex from ``os.urandom``. Seeded: a counter in place of the clock and
    ``random.Random(seed)`` in place of ``os.urandom``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = random.Random(seed) if seed is not None else None
        self._lock = threading.Lock()
        self._last = 0

    def job_id(self) -> str:
        rng = self._rng
        if rng is None:
            now = time.time_ns() // 1000
            # strictly increasing, so ids made in one burst keep their order
            now = max(now, self._last + 1)
            self._last = now
            return f"{now:014x}{os.urandom(5).hex()}"
        with self._lock:
            self._last += 1
            return f"{self._last:014x}{rng.getrandbits(40):010x}"

    def token(self) -> str:
        rng = self._rng
        if rng is None:
            return os.urandom(8).hex()
        with self._lock:
            return f"{rng.getrandbits(64):016x}"


_default = IdMaker()


def seed_ids(seed: int | None) -> None:
    """Make ``new_job_id`` and ``new_token`` replayable from ``seed`` (None: random again)."""
    global _default
    _default = IdMaker(seed)


def new_job_id() -> str:
    """A job id from the module's maker (see ``seed_ids``)."""
    return _default.job_id()


def new_token() -> str:
    """A lease token from the module's maker (see ``seed_ids``)."""
    return _default.token()
