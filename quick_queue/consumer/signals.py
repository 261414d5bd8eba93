"""SIGINT/SIGTERM for a consumer: the first asks for a graceful shutdown."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def install_stop_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGINT or SIGTERM; returns a function that restores the previous
    handlers. Outside the main thread (where Python cannot set handlers) nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum: int, frame: object) -> None:
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
