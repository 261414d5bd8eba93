"""A worker process running async and plain handlers at once, for the async crash test.

    python async_jobs.py URL LOG [--queue NAME] [--processes N] [--concurrency C]
                                 [--settings JSON]

Same command line, log and output as ``proc_jobs.py``. Handlers log one JSON line per start
and end to LOG: ``mix:async`` awaits ``payload["work"]`` seconds on the worker's event loop,
``mix:sync`` sleeps as long in a worker thread, ``mix:tx`` is transactional (plain): it writes
``("app", "done", job_id)`` and adds 1 to ``("app", "count", job_id)`` through ``meta.tr``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import quick_queue as qq
from quick_queue.keys import pack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc_jobs import LOG_ENV, log_event


@qq.job(topic="mix:async", max_retries=10)
class AsyncWork:
    async def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        log_event("start", meta, kind="async")
        await asyncio.sleep(float(payload.get("work", 0)))
        log_event("end", meta, kind="async")


@qq.job(topic="mix:sync", max_retries=10)
class SyncWork:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        log_event("start", meta, kind="sync")
        time.sleep(float(payload.get("work", 0)))
        log_event("end", meta, kind="sync")


@qq.job(topic="mix:tx", transactional=True, max_retries=10)
class Transactional:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        assert meta.tr is not None
        log_event("start", meta, kind="tx")
        meta.tr[pack(("app", "done", meta.job_id))] = str(os.getpid()).encode()
        meta.tr.add(pack(("app", "count", meta.job_id)), (1).to_bytes(8, "little"))
        time.sleep(float(payload.get("work", 0)))
        log_event("end", meta, kind="tx")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log")
    parser.add_argument("--queue", default="default")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    os.environ[LOG_ENV] = args.log
    db = qq.open(args.url)
    queue = qq.JobQueue(db, name=args.queue, jobs=[AsyncWork, SyncWork, Transactional],
                        **json.loads(args.settings))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    summary = queue.run(concurrency=args.concurrency, processes=args.processes, log=False)
    if summary is not None:
        print(json.dumps(dataclasses.asdict(summary)), flush=True)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
