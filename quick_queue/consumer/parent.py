"""A consumer process that ends with its supervisor: without this, the children of a killed
``run(processes=N)`` would live on as orphans, taking jobs beside a restarted supervisor's."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("quick_queue.worker")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL_INTERVAL = 1.0  # seconds between looks at the parent, where the kernel cannot tell us


def _ask_kernel(sig: int) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent: int, stop: Callable[[], None]) -> None:
    """Call ``stop`` (a graceful shutdown) when the process ``parent`` is no longer this
    process's parent. On Linux the kernel sends SIGTERM at once (the consumer's signal handler
    stops it); everywhere a daemon thread also checks every second, which covers the parent
    dying before the kernel was asked and systems without ``prctl``."""
    _ask_kernel(signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            if stopped.wait(POLL_INTERVAL):
                return
        log.warning("the supervisor (pid %d) is gone: this consumer stops", parent)
        stop()

    stopped = threading.Event()
    threading.Thread(target=watch, name="quick_queue-parent", daemon=True).start()
