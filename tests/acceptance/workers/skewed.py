"""A worker process whose wall clock is wrong, for the clock-skew and chaos tests.

    python skewed.py URL LOG OFFSET_FILE [--concurrency C] [--settings JSON]

Before quick_queue is imported, ``time.time`` is replaced by the true time plus the number of
seconds written in OFFSET_FILE (read again every 20 ms, so a test steps the clock mid-run by
rewriting the file; missing or empty means 0). That is what a skewed host, or an NTP step,
looks like to a Python process; the monotonic and boot clocks are left alone, as a real step
leaves them.

Handlers append one JSON line per start and end to LOG with the *true* time (``CLOCK_REALTIME``
read directly, which the patch does not touch), so runs of several processes can be checked for
overlap. ``skew:work`` sleeps ``payload["work"]`` seconds; ``skew:tx`` is transactional: it reads
a key, writes ``("done", job_id)`` through ``meta.tr`` and sleeps ``payload["work"]`` seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_true_time = time.time
_offset_file = Path(sys.argv[3]) if len(sys.argv) > 3 else None
_offset = [0.0, -1.0]  # value, monotonic time it was read


def _offset_now() -> float:
    now = time.monotonic()
    if _offset_file is not None and now - _offset[1] >= 0.02:
        _offset[1] = now
        try:
            _offset[0] = float(_offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            pass  # missing, or being rewritten: keep the last value
    return _offset[0]


def _skewed_time() -> float:
    return _true_time() + _offset_now()


time.time = _skewed_time  # before quick_queue is imported, so every use of it sees the skew

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import quick_queue as qq  # noqa: E402
from quick_queue.keys import pack  # noqa: E402


def true_now() -> float:
    return time.clock_gettime(time.CLOCK_REALTIME)


def record(event: str, meta: qq.JobMeta, **extra: Any) -> None:
    line = {"event": event, "job": meta.job_id, "tenant": meta.tenant, "topic": meta.topic,
            "attempt": meta.attempt, "pid": os.getpid(), "t": true_now(), **extra}
    fd = os.open(os.environ["QQ_SKEW_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@qq.job(topic="skew:work", max_retries=10)
class Work:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        record("start", meta)
        time.sleep(float(payload.get("work", 0)))
        record("end", meta, lease_lost=meta.lease_lost.is_set())


@qq.job(topic="skew:tx", transactional=True, max_retries=10)
class Transactional:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        assert meta.tr is not None
        record("start", meta)
        meta.tr.get(pack(("app", "config")))
        meta.tr[pack(("app", "done", meta.job_id))] = str(os.getpid()).encode()
        meta.tr.add(pack(("app", "count", meta.job_id)), (1).to_bytes(8, "little"))
        time.sleep(float(payload.get("work", 0)))
        record("end", meta, lease_lost=meta.lease_lost.is_set())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log")
    parser.add_argument("offset_file")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    os.environ["QQ_SKEW_LOG"] = args.log
    db = qq.open(args.url)
    queue = qq.JobQueue(db, jobs=[Work, Transactional], **json.loads(args.settings))
    print(json.dumps({"ready": os.getpid(), "wall": time.time()}), flush=True)
    summary = queue.run(concurrency=args.concurrency, log=False)
    print(json.dumps(dataclasses.asdict(summary)), flush=True)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
