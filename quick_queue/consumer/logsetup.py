"""The worker log's format, and ``run(log=...)``: one line per job state change on stderr, as
``quick-queue worker`` prints them, for a ``run()`` started from Python."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(message)s"
LOG_FORMAT_PROCESSES = "%(asctime)s.%(msecs)03d [%(process)d] %(message)s"
DATE_FORMAT = "%H:%M:%S"


@contextmanager
def worker_logging(log: bool | None, processes: int = 1) -> Iterator[None]:
    """While the block runs, log the ``quick_queue`` loggers to stderr at INFO.

    ``log=None`` (the default of ``run()``): only when the application has not configured
    logging itself (no handler on the ``quick_queue`` loggers or the root logger), and then
    only the warnings (a lease lost, an outcome that could not be applied, a job dead without
    running, storage trouble): a line per job costs a busy worker about 40 % of its
    throughput (two formatted lines per no-op job, measured with ``scripts/bench.py``), more
    than a library should spend unasked. ``True``: every state change at INFO, as
    ``quick-queue worker`` prints. ``False``: nothing is added.
    """
    logger = logging.getLogger("quick_queue")
    if log is False or (log is None and logger.hasHandlers()):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        LOG_FORMAT_PROCESSES if processes > 1 else LOG_FORMAT, datefmt=DATE_FORMAT))
    level = logger.level
    logger.addHandler(handler)
    if log is None:
        handler.setLevel(logging.WARNING)  # and the logger's level stays: INFO lines cost nothing
    elif logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
