"""Taking turns at the embedded store's write lock between processes.

SQLite lets a connection that finds the write lock taken wait in its busy handler, which sleeps
1, 2, 5, 10, ... ms between tries. Two worker processes that commit back to back then starve
each other: the one that just committed takes the lock again microseconds later while the other
is still asleep. Measured (issue 10; two processes, each committing for 0.1 ms every 0.3 ms):
``BEGIN IMMEDIATE`` waited 3-19 ms at p99 and up to 1.3 s at worst, and one process made half
the commits of the other. That is why a second worker process added almost nothing to a drain.

So a committer of this store first takes its *turn*: an exclusive ``flock`` on a small file in
the store's wake-up folder (``kv/wakeup.py``: one per database file and user, in the temporary
folder, so nothing is left beside the user's database), polled every 50-200 µs instead of
SQLite's milliseconds, and let go right after COMMIT or ROLLBACK. Measured with turns: p99
1.5-8 ms on a loaded machine, worst 5-56 ms, and commits split evenly. ``BEGIN IMMEDIATE`` then
finds SQLite's lock free.

A turn is only a queue in front of SQLite's lock, never the guard of correctness:

* it is bounded: after ``timeout`` seconds without a turn (a process frozen mid-commit holds
  it), the commit goes on to ``BEGIN IMMEDIATE`` and SQLite's own busy timeout, as before;
* where the file cannot be made (a folder we may not write), between processes of different
  users (each has its own folder), or for programs that do not take turns, SQLite's lock and
  busy handler serialise the writers as before;
* a process that dies while holding its turn gives it back (the kernel closes its files);
* ``flock`` locks belong to an open file, so two handles of one process take turns too.

The polling is deliberate: a blocking ``flock`` hands over faster but cannot time out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time

# This process's id, kept by a fork hook: ``_file`` compares it at every commit, where
# ``os.getpid()`` is a system call (glibc does not cache it).
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

FIRST_PAUSE = 50e-6  # seconds between tries: doubled up to LAST_PAUSE
LAST_PAUSE = 200e-6


class WriterTurn:
    """One database handle's place in the queue for its store's write lock; ``path`` is the turn
    file, the same for every process of the store."""

    def __init__(self, path: str, timeout: float, *, usable: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self.waits = 0  # commits that found another writer's turn in progress (for tests)
        self._fd: int | None = None
        self._pid = -1
        self._usable = usable  # False: never make the file, let SQLite's lock decide
        self._held = False
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for this handle's turn (at most ``timeout``). Without a usable turn file, or
        after the timeout, it returns anyway: SQLite's lock decides then."""
        fd = self._file()
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.waits += 1
            if not self._wait(fd):
                return
        except OSError:
            self._usable = False
            return
        self._held = True

    def _wait(self, fd: int) -> bool:
        deadline = time.monotonic() + self.timeout
        pause = FIRST_PAUSE
        while time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, LAST_PAUSE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue
            except OSError:
                self._usable = False
                return False
        return False

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        fd = self._fd
        if fd is not None:
            try:  # (not contextlib.suppress: an object and two calls at every commit)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def _file(self) -> int | None:
        fd = self._fd
        if fd is not None and self._usable and self._pid == _pid:  # without the lock
            return fd
        if not self._usable:
            return None
        with self._lock:
            if self._fd is not None and self._pid == _pid:
                return self._fd
            # A forked child must not share its parent's open file (nor its lock): its own.
            self._pid = _pid
            try:
                os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                self._usable = False
                self._fd = None
            return self._fd

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            self._held = False
            if fd is not None and self._pid == _pid:
                with contextlib.suppress(OSError):
                    os.close(fd)
