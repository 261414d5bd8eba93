"""Riding out a failing store: which errors are transient, and the backoff of a loop that
meets one (the scanner; the settler and keeper log and try again on their next round)."""

from __future__ import annotations

import logging
import threading

from quick_queue.kv.errors import IO_ERROR, KVError, StorageError, is_retryable

log = logging.getLogger("quick_queue.worker")
BACKOFF_MAX = 30.0  # seconds between tries while the store keeps failing
TRANSACTION_TIMED_OUT = 1031


def is_transient(error: BaseException) -> bool:
    """A storage error that should pass on its own: disk full, I/O, a retryable engine error
    that outlived the retry loop."""
    if isinstance(error, StorageError):
        return error.code == IO_ERROR  # disk full, I/O; not a missing file or no permission
    if isinstance(error, KVError):
        return is_retryable(error) or error.code == TRANSACTION_TIMED_OUT
    return False


class StorageBackoff:
    """Backs the scanner off while the store fails: logs the first failure and the recovery
    once each, waits 0.1 s doubling to ``BACKOFF_MAX`` between tries, and re-raises an error
    that is not transient (a bug, a closed database), which stops the consumer."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self.failures = 0

    def failed(self, error: Exception) -> None:
        if not is_transient(error):
            raise error
        if self.failures == 0:
            log.error("the store failed (%s: %s); backing off and retrying until it "
                      "recovers", type(error).__name__, error)
        self.failures += 1
        self.stopping.wait(min(BACKOFF_MAX, 0.1 * 2 ** min(self.failures - 1, 10)))

    def succeeded(self) -> None:
        if self.failures:
            log.warning("the store is back after %d failed tries; resuming", self.failures)
            self.failures = 0
