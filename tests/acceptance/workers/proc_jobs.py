"""A worker process for the crash and multi-process tests.

    python proc_jobs.py URL LOG [--queue NAME] [--processes N] [--concurrency C]
                                [--settings JSON]

runs ``queue.run(...)`` on the database at URL with the handlers below until SIGTERM/SIGINT,
then prints its ``Summary`` as one JSON line (one process only; ``--processes`` > 1 runs the
supervisor, which prints nothing). Handlers append one JSON line per event to LOG (opened with
O_APPEND, one ``write`` per line, so lines of several processes never interleave).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import quick_queue as qq

LOG_ENV = "QQ_TEST_LOG"


def log_event(event: str, meta: qq.JobMeta, **extra: Any) -> None:
    line = {
        "event": event, "job": meta.job_id, "tenant": meta.tenant, "attempt": meta.attempt,
        "pid": os.getpid(), "t": time.time(), "deadline": meta.lease_deadline.timestamp(),
        **extra,
    }
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@qq.job(topic="proc:record")
class Record:
    """Logs start and end. ``block_first``: the first attempt blocks until the lease is lost
    (or for a minute), so the test can kill or stop the process mid-job."""

    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        log_event("start", meta)
        if payload.get("block_first") and meta.attempt == 1:
            lost = meta.lease_lost.wait(60)
            log_event("end", meta, lease_lost=lost)
            return
        if payload.get("work"):
            time.sleep(float(payload["work"]))
        log_event("end", meta, lease_lost=meta.lease_lost.is_set())


@qq.job(topic="proc:exit")
class ExitProcess:
    """Kills its own process, every time."""

    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        log_event("start", meta)
        os._exit(3)


HANDLERS = [Record, ExitProcess]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log")
    parser.add_argument("--queue", default="default")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args(argv)
    os.environ[LOG_ENV] = args.log
    db = qq.open(args.url)
    queue = qq.JobQueue(db, name=args.queue, jobs=HANDLERS, **json.loads(args.settings))
    print(json.dumps({"ready": os.getpid()}), flush=True)
    summary = queue.run(concurrency=args.concurrency, processes=args.processes)
    if summary is not None:
        print(json.dumps(dataclasses.asdict(summary)), flush=True)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
