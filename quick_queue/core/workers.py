"""Live workers: each running consumer keeps one record in the store, so an operator (``inspect``,
the dashboard) can see who is running and which worker holds a stuck job.

A record lives at ``("qqw", queue name, worker id)``: deliberately *outside* the queue's own
root ``("qq", name)``, so tools that walk the queue's keys (dumps, invariant checks) never see
it, and a queue that runs no worker pays nothing. The value is one JSON object (``WorkerInfo``).
A worker rewrites it on every heartbeat and clears it when it stops; one that died stops beating
and its record *lapses* at ``expires``: readers skip lapsed records, and the next heartbeat of
any worker of the queue clears a bounded number of them.

Pure transactional functions, like the rest of ``core``: each takes ``tr`` and an explicit
``now`` (seconds, the store's time), reads no clock and never sleeps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from quick_queue.keys import pack
from quick_queue.kv.api import ReadView, Transaction, strinc

#: Jobs listed per worker record at most (the count is always exact): a record stays small.
MAX_LISTED_JOBS = 200
#: Lapsed records one heartbeat clears at most (bounded work on the hot path of nobody).
PRUNE_LIMIT = 50


def workers_prefix(queue: str) -> bytes:
    return pack(("qqw", queue))


def worker_key(queue: str, worker_id: str) -> bytes:
    return workers_prefix(queue) + pack((worker_id,))


@dataclass
class WorkerInfo:
    """One live worker. Times are seconds since the epoch in the store's time. ``jobs``: the
    (tenant, job id) pairs it holds (at most ``MAX_LISTED_JOBS``; ``holding`` is the count)."""

    worker_id: str
    host: str
    pid: int
    started: float
    heartbeat: float
    expires: float
    concurrency: int
    holding: int = 0
    jobs: list[tuple[str, str]] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> WorkerInfo | None:
        """The record, or None for bytes that are not one (never raises: a view must show the
        other workers whatever one record holds)."""
        try:
            data = json.loads(raw)
            return cls(
                str(data["worker_id"]), str(data["host"]), int(data["pid"]),
                float(data["started"]), float(data["heartbeat"]), float(data["expires"]),
                int(data["concurrency"]), int(data.get("holding", 0)),
                [(str(t), str(j)) for t, j in data.get("jobs", [])],
            )
        except (ValueError, TypeError, KeyError):
            return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["jobs"] = [{"tenant": t, "job_id": j} for t, j in self.jobs]
        return out


def beat(tr: Transaction, queue: str, info: WorkerInfo, now: float) -> int:
    """Write ``info`` (register or heartbeat) and clear up to ``PRUNE_LIMIT`` lapsed records of
    other workers; returns how many were cleared."""
    tr.set(worker_key(queue, info.worker_id), info.encode())
    prefix = workers_prefix(queue)
    cleared = 0
    for key, raw in tr.snapshot.get_range(prefix, strinc(prefix), limit=PRUNE_LIMIT * 4):
        other = WorkerInfo.decode(raw)
        if (other is None or other.expires < now) and cleared < PRUNE_LIMIT:
            tr.clear(key)
            cleared += 1
    return cleared


def unregister(tr: Transaction, queue: str, worker_id: str) -> None:
    tr.clear(worker_key(queue, worker_id))


def live_workers(tr: ReadView, queue: str, now: float, limit: int = 1000
                 ) -> list[WorkerInfo]:
    """The workers of ``queue`` whose heartbeat has not lapsed at ``now``, in id order (at most
    ``limit``)."""
    prefix = workers_prefix(queue)
    out: list[WorkerInfo] = []
    after = prefix
    while len(out) < limit:
        rows = list(tr.get_range(after, strinc(prefix), limit=limit))
        for _key, raw in rows:
            info = WorkerInfo.decode(raw)
            if info is not None and info.expires >= now and len(out) < limit:
                out.append(info)
        if len(rows) < limit:
            break
        after = rows[-1][0] + b"\x00"
    return out
