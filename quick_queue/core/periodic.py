"""Periodic schedules in the store (issue 13): one key per schedule, ``flow/schedule/{name}``,
holding the schedule's *cursor* (the first tick not yet enqueued, microseconds) and its
definition (JSON, interpreted by ``quick_queue.flow.schedule``).

Every worker may tick a schedule. ``tick`` reads the schedule's key with a regular read,
enqueues the ticks that are due and moves the cursor past ``now`` in the same transaction, so
two workers ticking at once conflict and the loser, retried, finds the cursor already moved:
each tick is enqueued once however many workers race. The jobs carry a key derived from the
schedule and the tick time as well, so a retry after an unknown commit result (1021) writes
nothing twice either.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from quick_queue.core.enqueue import NewJob, enqueue
from quick_queue.keys import Layout, unpack
from quick_queue.kv.api import ReadView, Transaction

# (definition, cursor, now) -> (jobs to enqueue, the new cursor, after now)
Planner = Callable[[bytes, int, int], tuple[list[NewJob], int]]

_CURSOR = struct.Struct(">q")
LIST_LIMIT = 10_000  # schedules read by one listing; far more than any app defines


def encode(cursor: int, definition: bytes) -> bytes:
    return _CURSOR.pack(cursor) + definition


def decode(raw: bytes) -> tuple[int, bytes]:
    return int(_CURSOR.unpack_from(raw)[0]), raw[_CURSOR.size:]


def put_schedule(
    tr: Transaction, layout: Layout, name: str, definition: bytes, first_tick: int
) -> bool:
    """Create or change a schedule; an unchanged definition keeps its cursor (so redefining
    every schedule at each start neither skips nor repeats a tick). True when written."""
    key = layout.schedule(name)
    raw = tr.get(key)
    if raw is not None and decode(raw)[1] == definition:
        return False
    tr.set(key, encode(first_tick, definition))
    return True


def remove_schedule(tr: Transaction, layout: Layout, name: str) -> bool:
    key = layout.schedule(name)
    if tr.get(key) is None:
        return False
    tr.clear(key)
    return True


def list_schedules(tr: ReadView, layout: Layout) -> list[tuple[str, int, bytes]]:
    """(name, cursor, definition) of every schedule, by name."""
    prefix = layout.flow_prefix
    begin = layout.schedule("")
    rows = tr.get_range(begin, prefix + b"\x02s\x00\xff", limit=LIST_LIMIT)
    out = []
    for key, raw in rows:
        name = unpack(key, len(prefix))[1]
        cursor, definition = decode(raw)
        out.append((str(name), cursor, definition))
    return out


def tick(
    tr: Transaction, layout: Layout, name: str, now: int, plan: Planner, slack: int
) -> tuple[int, int | None]:
    """Enqueue the due ticks of schedule ``name`` and move its cursor past ``now``.
    Returns (jobs enqueued, the cursor now; None when the schedule is gone)."""
    key = layout.schedule(name)
    raw = tr.get(key)  # regular: racing tickers conflict here
    if raw is None:
        return 0, None
    cursor, definition = decode(raw)
    if cursor > now:
        return 0, cursor
    jobs, after = plan(definition, cursor, now)
    for job in jobs:
        enqueue(tr, layout, job, now, slack)
    tr.set(key, encode(after, definition))
    return len(jobs), after
