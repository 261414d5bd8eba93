"""Riding out a failing store: which errors are transient, one log line per outage (not one
per try), and the backoff of a loop that meets one."""

from __future__ import annotations

import logging
import threading

from quick_queue.kv.errors import IO_ERROR, KVError, StorageError, is_retryable

log = logging.getLogger("quick_queue.worker")
BACKOFF_MAX = 30.0  # seconds between tries while the store keeps failing
TRANSACTION_TIMED_OUT = 1031


def is_transient(error: BaseException) -> bool:
    """A storage error that should pass on its own: disk full or another I/O error of the
    embedded file, a retryable engine error that outlived the retry loop, a timeout."""
    if isinstance(error, StorageError):
        return error.code == IO_ERROR  # disk full, I/O; not a missing file or no permission
    if isinstance(error, KVError):
        return is_retryable(error) or error.code == TRANSACTION_TIMED_OUT
    return False


class Outage:
    """Logs the first failure of an outage and the recovery, once each, for one loop
    (``what``: "leasing jobs", "settling outcomes", "extending leases")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        if self.failures == 0:
            log.error("the store failed while %s (%s: %s); retrying with backoff until it "
                      "recovers", self.what, type(error).__name__, error)
        self.failures += 1

    def recovered(self) -> None:
        if self.failures:
            log.warning("the store is back (%s, after %d failed tries)", self.what,
                        self.failures)
            self.failures = 0

    def delay(self) -> float:
        """Seconds to wait before the next try: 0.1 doubling up to ``BACKOFF_MAX``."""
        return float(min(BACKOFF_MAX, 0.1 * 2 ** min(max(self.failures - 1, 0), 10)))


class StorageBackoff:
    """The scanner's: waits out a transient error (until ``stopping``), and re-raises one that
    is not (a bug, a closed database), which stops the consumer."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self.outage = Outage("leasing jobs")

    def failed(self, error: Exception) -> None:
        if not is_transient(error):
            raise error
        self.outage.failed(error)
        self.stopping.wait(self.outage.delay())

    def succeeded(self) -> None:
        self.outage.recovered()
