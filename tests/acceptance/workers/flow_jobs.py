"""``proc_jobs.py`` with handlers that declare flow limits (issue 13): the same command line,
the same event log, plus ``proc:capped`` (``max_running=2``) and ``proc:paced``
(``rate_limit="20/s"``). Each logs start and end; ``work`` seconds of sleep between."""

from __future__ import annotations

import sys
import time
from typing import Any

import proc_jobs
from proc_jobs import log_event

import quick_queue as qq


def _work(payload: dict[str, Any], meta: qq.JobMeta) -> None:
    log_event("start", meta)
    time.sleep(float(payload.get("work", 0)))
    log_event("end", meta, lease_lost=meta.lease_lost.is_set())


@qq.job(topic="proc:capped", max_running=2)
class Capped:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        _work(payload, meta)


@qq.job(topic="proc:paced", rate_limit="20/s")
class Paced:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        _work(payload, meta)


if __name__ == "__main__":
    proc_jobs.HANDLERS = [*proc_jobs.HANDLERS, Capped, Paced]
    sys.exit(proc_jobs.main())
