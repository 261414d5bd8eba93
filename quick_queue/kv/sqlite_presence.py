"""Which handles write one embedded database file, so a handle alone on it can skip the shared
conflict log (issue 10: one statement fewer per commit).

Why the log exists: a commit of handle H is checked against the write ranges committed after
its read version by *every* handle. A handle knows its own commits (its in-memory history);
those of other handles, in this process or another, reach it only through ``qq_log``. So a
handle may leave a commit out of the log only if no other handle can hold a read version older
than that commit. The protocol that guarantees it:

1. **Presence.** Every writing handle holds a shared POSIX lock on byte 0 of ``<file>-qqlock``
   from before its first read until it is closed (the kernel drops it when the process dies).
   Handles of one process share one descriptor (POSIX locks belong to the process, and closing
   any descriptor of the file would drop them), counted in ``_REGISTRY``.
2. **Attach.** After taking the lock and before its first read version, a handle commits a
   change to the file (``ATTACH``). A read version of handle H is therefore always newer than
   H's attach commit, and H holds the lock from before that commit.
3. **Alone.** A handle decides it is alone (``Presence.alone``) only inside its write
   transaction (SQLite's write lock held): no other handle of its process, and converting its
   lock to exclusive (non-blocking) succeeds, i.e. no other process holds the lock. It then
   keeps that decision only while ``PRAGMA data_version`` shows no commit by another
   connection; any such commit (an attach among them) makes it decide again, before it writes.

Proof that a commit C of handle A, left out of the log, cannot be missed by a transaction T of
another handle H whose read version is older than C: T's read version is newer than H's attach
commit, so C came after that attach. A decided "alone" at some moment m, inside a write
transaction before C's. If m came after H took its lock, the lock (or the process's count) was
seen and A was not alone. If m came before H took its lock, H's attach commit came between m and
C, so ``data_version`` changed and A decided again at C, seeing H. Either way C was logged. A
handle that closed (or died) before m holds no read version any more. Read-only handles never
commit writes, so they need no log and take no part.

Where the lock cannot be taken (an unwritable folder, a platform without POSIX locks) the
handle never considers itself alone: every commit is logged, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading

try:
    import fcntl
except ImportError:  # not POSIX: every commit is logged
    fcntl = None  # type: ignore[assignment]

#: Key of the row holding the database version, in the ``kv`` table: past ``\xff\xff``, so
#: no read, range or clear of the key-value API can reach it (they stop at ``\xff\xff``).
VERSION_KEY = b"\xff\xff\xff\xffquick_queue/version"
#: Creates the version row of a new store, or of a store made before the row existed (whose
#: newest conflict-log row holds its version).
VERSION_ROW = (
    "INSERT OR IGNORE INTO kv (k, v) SELECT ?, coalesce(max(version), 0) FROM qq_log"
)
#: The attach commit: a real change, so every other connection's ``data_version`` moves.
ATTACH = (
    "INSERT INTO qq_meta (name, value) VALUES ('attached', 1) "
    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
)
LOCK_SUFFIX = "-qqlock"

_REGISTRY_LOCK = threading.Lock()
# (pid, lock file path) -> [open handles of this process on the file, the descriptor]
_REGISTRY: dict[tuple[int, str], list[int]] = {}


class Presence:
    """This handle's part in the protocol of the module docstring."""

    def __init__(self, db_path: str) -> None:
        self._key: tuple[int, str] | None = None
        if fcntl is None:
            return
        lock_path = os.path.realpath(db_path) + LOCK_SUFFIX
        key = (os.getpid(), lock_path)
        with _REGISTRY_LOCK:
            entry = _REGISTRY.get(key)
            if entry is None:
                fd = _lock_shared(lock_path)
                if fd is None:
                    return
                entry = _REGISTRY[key] = [0, fd]
            entry[0] += 1
        self._key = key

    @property
    def usable(self) -> bool:
        return self._key is not None

    def alone(self) -> bool:
        """Whether no other handle has this file open for writing. Call inside a write
        transaction only (see the module docstring)."""
        key = self._key
        if key is None or fcntl is None:
            return False
        with _REGISTRY_LOCK:
            entry = _REGISTRY.get(key)
            if entry is None or entry[0] != 1:
                return False
            fd = entry[1]
            try:
                # POSIX: a conversion that cannot be granted fails and leaves our shared lock
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError:
                return False
            fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)  # back to shared: newcomers may attach
            return True

    def close(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _REGISTRY_LOCK:
            entry = _REGISTRY.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                del _REGISTRY[key]
                _unlock(key[1], entry[1])


def _lock_shared(lock_path: str) -> int | None:
    """A descriptor of ``lock_path`` holding the shared lock, or None where locks fail.

    The last handle to close removes the file (``_unlock``), so a lock taken on a file that
    was removed meanwhile is worthless: it is checked against the path and taken again."""
    assert fcntl is not None
    for _ in range(100):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)
            held = os.fstat(fd)
            named = os.stat(lock_path)
        except FileNotFoundError:
            os.close(fd)
            continue  # removed after we opened it: open the new one
        except OSError:
            os.close(fd)
            return None
        if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
            return fd
        os.close(fd)
    return None


def _unlock(lock_path: str, fd: int) -> None:
    """Release this process's lock; the last process out removes the file (while it holds
    the exclusive lock, so nobody holds a lock on it: newcomers blocked on it check the path
    after they get it and open the next file)."""
    assert fcntl is not None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        os.unlink(lock_path)
    except OSError:
        pass  # still in use elsewhere (or gone): leave it
    with contextlib.suppress(OSError):
        os.close(fd)  # releases the lock
