"""Rate limits (issue 13): at most one lease of a topic (or of a tenant) every ``interval``
microseconds across every worker, smooth rather than bursty at window edges (a generic cell
rate algorithm with no burst allowance).

The limits are ``flow/rate/{topic}`` (the queue's setting), ``flow/drate/{topic}`` (declared by
``@job(rate_limit=...)``, written by each worker that runs the handler when it starts; the
queue's setting wins when both exist, as for caps) and ``flow/trate/{tenant}``, each an
interval. Their state, ``rates/{topic}`` or ``trates/{tenant}``, is the earliest time the next
job may be leased. A worker leasing jobs of a limited topic or tenant reads that time with a
regular read in the dequeue's own transaction: a job may go if every limit it falls under has
come round, and moves each on by its interval; the others are handed back unspent
(``caps.hand_back``) for the time their turn comes. Two workers leasing at once conflict, so
every lease is counted. The lease, not the handler's start, is what is spaced: a job waits at
most its worker's prefetch queue between the two.
"""

from __future__ import annotations

import re
import struct

from quick_queue.core.caps import Targets, hand_back, key, list_kind, topic_limit
from quick_queue.errors import InvalidArgument
from quick_queue.keys import Layout, pack, pack_str
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import LeasedJob

QUEUE, DECLARED, TENANT = "rate", "drate", "trate"  # kinds of rate keys under flow/
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


def tenant_state(layout: Layout, tenant: str) -> bytes:
    return layout.root + pack(("ftr",)) + pack_str(tenant)


def set_rate(tr: Transaction, layout: Layout, name: str, interval: int | None,
             kind: str = QUEUE) -> None:
    if interval is None:
        tr.clear(key(layout, kind, name))
        if kind == TENANT:
            tr.clear(tenant_state(layout, name))
        elif kind == QUEUE:
            tr.clear(layout.rate_state(name))
    else:
        tr.set(key(layout, kind, name), str(interval).encode())


def _turn(tr: Transaction, state_key: bytes, now: int) -> int:
    state = tr.get(state_key)  # regular: racing workers conflict
    return max(now, _TIME.unpack(state)[0] if state else 0)


def take_turns(
    tr: Transaction, layout: Layout, jobs: list[LeasedJob], limited: Targets, now: int
) -> list[LeasedJob]:
    """Let each just-leased job of a rate-limited topic or tenant go if its turns have come,
    else hand it back until they have; returns the jobs to run."""
    gates: dict[bytes, list[int]] = {}  # state key -> [interval, next free time]
    for topic in sorted({job.record.topic for job in jobs} & limited.topics):
        interval = topic_limit(tr, layout, topic, (QUEUE, DECLARED))
        if interval is not None:
            state = layout.rate_state(topic)
            gates[state] = [interval, _turn(tr, state, now)]
    for tenant in sorted({job.tenant for job in jobs} & limited.tenants):
        raw = tr.get(key(layout, TENANT, tenant))
        if raw is not None:
            state = tenant_state(layout, tenant)
            gates[state] = [int(raw), _turn(tr, state, now)]
    if not gates:
        return jobs
    back: set[str] = set()
    for job in jobs:
        mine = [g for g in (gates.get(layout.rate_state(job.record.topic)),
                            gates.get(tenant_state(layout, job.tenant))) if g is not None]
        if not mine:
            continue
        wait = max(turn for _, turn in mine)
        if wait <= now:
            for gate in mine:
                gate[1] += gate[0]
        else:
            hand_back(tr, layout, job, wait, now)
            back.add(job.record.job_id)
    for state, (_, turn) in gates.items():
        tr.set(state, _TIME.pack(turn))
    return [job for job in jobs if job.record.job_id not in back]


def list_rates(tr: ReadView, layout: Layout) -> dict[str, int]:
    """The interval in force of every limited topic (the queue's setting, else declared)."""
    return list_kind(tr, layout, DECLARED) | list_kind(tr, layout, QUEUE)
