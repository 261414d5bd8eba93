"""Who hears about the retry loop's retries: a process-wide observer hook.

``Database.transact`` (so ``@transactional`` too) calls ``notify(code)`` each time it runs a
transaction again after a retryable error (1020 not_committed, 1021 commit_unknown_result,
1007 transaction_too_old, 1009 future_version, ...). With nobody listening that is one check of
``listeners`` on a path that is about to back off anyway, so it costs nothing worth measuring.

The layers above subscribe here (``quick_queue.metrics`` exports ``counter()`` as
``quick_queue_store_retries_total``); this module imports nothing of theirs, keeping the
key-value layer at the bottom of the package.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: FoundationDB's names of the codes a retry loop meets (others are labelled ``error_<code>``).
NAMES: dict[int, str] = {
    1007: "transaction_too_old",
    1009: "future_version",
    1020: "not_committed",
    1021: "commit_unknown_result",
    1025: "transaction_cancelled",
    1037: "process_behind",
    1038: "database_locked",
    1039: "cluster_version_changed",
    1042: "commit_proxy_memory_limit_exceeded",
    1051: "batch_transaction_throttled",
    1078: "grv_proxy_memory_limit_exceeded",
    1213: "tag_throttled",
    1223: "proxy_tag_throttled",
    1235: "transaction_throttled_hot_shard",
}

Listener = Callable[[int], None]

#: The current listeners; replaced whole (never mutated) so ``notify`` reads it without a lock.
listeners: tuple[Listener, ...] = ()
_lock = threading.Lock()


def name_of(code: int) -> str:
    return NAMES.get(code, f"error_{code}")


def listen(listener: Listener) -> None:
    """Call ``listener(code)`` on every retry in this process, from the retrying thread: it
    must be quick and must not raise."""
    global listeners
    with _lock:
        listeners = (*listeners, listener)


def unlisten(listener: Listener) -> None:
    global listeners
    with _lock:
        listeners = tuple(known for known in listeners if known is not listener)


def notify(code: int) -> None:
    for listener in listeners:
        listener(code)


class RetryCounter:
    """Retries counted by error code, safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    def __call__(self, code: int) -> None:
        with self._lock:
            self._counts[code] = self._counts.get(code, 0) + 1

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)


_process_counter: RetryCounter | None = None


def counter() -> RetryCounter:
    """This process's counter of retries by code, listening from the first call on (counts
    start then: a metrics exporter calls it when it starts)."""
    global _process_counter
    with _lock:
        existing = _process_counter
    if existing is not None:
        return existing
    made = RetryCounter()
    with _lock:
        if _process_counter is not None:
            return _process_counter
        _process_counter = made
    listen(made)
    return made
