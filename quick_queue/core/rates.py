"""Rate limits (issue 13): at most one start of a topic every ``interval`` microseconds across
every worker, smooth rather than bursty at window edges (a generic cell rate algorithm with no
burst allowance).

The limit is ``flow/rate/{topic}`` (the interval); its state, ``rates/{topic}``, is the earliest
time the next job may be leased. A worker leasing jobs of a limited topic reads that time with
a regular read in the dequeue's own transaction: a job may go if the time has come, and moves
it on by one interval; the others are handed back unspent (``caps.hand_back``) for the time
their turn comes. Two workers leasing the topic at once conflict, so every lease is counted.
The lease, not the handler's start, is what is spaced: a job waits at most its worker's
prefetch queue between the two.
"""

from __future__ import annotations

import re
import struct

from quick_queue.core.caps import hand_back
from quick_queue.errors import InvalidArgument
from quick_queue.keys import Layout, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import LeasedJob

_TIME = struct.Struct(">q")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
          "hour": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


def parse_rate(text: str) -> int:
    """``"100/s"``, ``"30/min"``, ``"5/h"`` -> microseconds between starts."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or match.group(2) not in _UNITS or int(match.group(1)) < 1:
        raise InvalidArgument(
            f"a rate is COUNT/UNIT with a count of at least 1 and a unit of s, min or h, e.g. "
            f"'100/s', not {text!r}"
        )
    return max(1, _UNITS[match.group(2)] * 1_000_000 // int(match.group(1)))


def set_rate(tr: Transaction, layout: Layout, topic: str, interval: int | None) -> None:
    if interval is None:
        tr.clear(layout.rate(topic))
        tr.clear(layout.rate_state(topic))
    else:
        tr.set(layout.rate(topic), str(interval).encode())


def take_turns(
    tr: Transaction, layout: Layout, jobs: list[LeasedJob], limited: frozenset[str], now: int
) -> list[LeasedJob]:
    """Let each just-leased job of a rate-limited topic go if its turn has come, else hand it
    back until it has; returns the jobs to run."""
    back: set[str] = set()
    for topic in sorted({job.record.topic for job in jobs} & limited):
        raw = tr.get(layout.rate(topic))
        if raw is None:
            continue
        interval = int(raw)
        state = tr.get(layout.rate_state(topic))  # regular: racing workers conflict
        turn = max(now, _TIME.unpack(state)[0] if state else 0)
        for job in (job for job in jobs if job.record.topic == topic):
            if turn <= now:
                turn += interval
            else:
                hand_back(tr, layout, job, turn, now)
                back.add(job.record.job_id)
        tr.set(layout.rate_state(topic), _TIME.pack(turn))
    return [job for job in jobs if job.record.job_id not in back]


def list_rates(tr: ReadView, layout: Layout) -> dict[str, int]:
    prefix = layout.flow_prefix
    begin = layout.rate("")
    rows = tr.get_range(begin, begin[:-2] + b"\xff", limit=10_000)
    return {str(unpack(key, len(prefix))[1]): int(raw) for key, raw in rows}
