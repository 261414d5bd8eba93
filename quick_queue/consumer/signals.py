"""SIGINT/SIGTERM for a consumer: the first asks for a graceful shutdown, a second one exits at
once (a worker stuck in a long grace period can always be stopped)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("quick_queue.worker")


def install_stop_handlers(stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGINT or SIGTERM, and exit with status 128 + the signal on a second
    one (the leases of running jobs then expire and the jobs run again elsewhere). Returns a
    function that restores the previous handlers. Outside the main thread (where Python
    cannot set handlers) nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            log.warning("second %s: exiting now; the leases of running jobs will expire",
                        signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        received.append(signum)
        # a warning: shown by run()'s default log too, since it tells how to force the exit
        log.warning("%s: shutting down gracefully (a second signal exits at once)",
                 signal.Signals(signum).name)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
