"""SIGINT/SIGTERM for a consumer: the first asks for a graceful shutdown, a second one exits at
once (a worker stuck in a long grace period can always be stopped).

A consumer process under a supervisor (``consumer.processes``) is asked to stop with
``SUPERVISOR_STOP`` instead, which never counts as the second signal: a SIGTERM sent to the
whole process group (systemd's default ``KillMode=control-group``, ``kill -TERM -<pgid>``,
supervisord's ``stopasgroup``) reaches each child directly *and* through its supervisor, and
the child must take the two as one request. Before, it took the forwarded one as the second
signal and exited at once, abandoning its running jobs to their lease expiry."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("quick_queue.worker")

#: The supervisor's graceful stop request to its consumer processes (see the module docstring).
SUPERVISOR_STOP = signal.SIGUSR1


def install_stop_handlers(
    stop: Callable[[], None], supervised: bool = False
) -> Callable[[], None]:
    """Call ``stop`` on SIGINT or SIGTERM, and exit with status 128 + the signal on a second
    one (the leases of running jobs then expire and the jobs run again elsewhere). With
    ``supervised``, ``SUPERVISOR_STOP`` also calls ``stop``, as often as it comes, and is not
    counted. Returns a function that restores the previous handlers. Outside the main thread
    (where Python cannot set handlers) nothing is done."""
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

    def on_supervisor_stop(signum: int, frame: object) -> None:
        stop()  # idempotent: a consumer already stopping just goes on stopping

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    if supervised:
        previous[SUPERVISOR_STOP] = signal.signal(SUPERVISOR_STOP, on_supervisor_stop)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
