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
import weakref

POOL = 256  # random tails drawn at once
_unseeded: weakref.WeakSet[IdMaker] = weakref.WeakSet()  # whose tails a forked child forgets


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
        # Random id tails drawn from os.urandom POOL at a time (one syscall and one hex() per
        # POOL ids instead of per id: 0.75 µs an id against 1.26 measured); list.pop is
        # atomic, so threads never share a tail. A forked child empties it (_forget_pools):
        # parent and child would otherwise make the same tails.
        self._tails: list[str] = []
        self._tokens: list[str] = []  # the same for lease tokens
        if seed is None:
            _unseeded.add(self)

    def job_id(self) -> str:
        rng = self._rng
        if rng is None:
            now = time.time_ns() // 1000
            # strictly increasing, so ids made in one burst keep their order
            last = self._last
            if now <= last:
                now = last + 1
            self._last = now
            try:
                tail = self._tails.pop()
            except IndexError:
                tail = self._refill("_tails", 5)
            return f"{now:014x}{tail}"
        with self._lock:
            self._last += 1
            return f"{self._last:014x}{rng.getrandbits(40):010x}"

    def token(self) -> str:
        rng = self._rng
        if rng is None:
            try:
                return self._tokens.pop()
            except IndexError:
                return self._refill("_tokens", 8)
        with self._lock:
            return f"{rng.getrandbits(64):016x}"

    def _refill(self, pool: str, size: int) -> str:
        """One random hex string of ``size`` bytes, and a new pool of them in ``pool``."""
        text = os.urandom(size * POOL).hex()
        width = 2 * size
        strings = [text[i : i + width] for i in range(0, width * POOL, width)]
        first = strings.pop()
        setattr(self, pool, strings)
        return first


def _forget_pools() -> None:
    for maker in list(_unseeded):
        maker._tails, maker._tokens = [], []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)

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
