"""Commit notifications between processes sharing one embedded database file.

An idle consumer must notice a new job within a few milliseconds without polling (polling every
millisecond costs several percent of a core per idle worker). Each waiting process binds a Unix
datagram socket in a folder derived from the database path; every commit sends one byte to each
socket there. A waiter blocks in ``recv`` with a timeout, so it uses no CPU while idle and wakes
within microseconds of a commit.

The sender lists the folder again only when its modification time changed, and looks at that
time at most every ``RESCAN_SECONDS``: measured (issue 10), the ``stat`` right after a commit's
fsync cost 15-20 µs of CPU per commit (1.6 µs in a loop). So a waiter that bound its socket
less than ``RESCAN_SECONDS`` ago may not be signalled yet: during that time its ``wait`` returns
(True) by ``RESCAN_SECONDS`` after the bind at the latest, so that its caller looks at the store.

It is only a hint: a lost datagram (a full socket buffer, a folder other users cannot write)
costs latency, never correctness, because waiters also wake on their timeout and then read the
store. Sockets of dead processes refuse datagrams and are removed by the next sender.

The folder is removed when the last handle of the store closes, so a machine that opens many
short-lived stores (a test suite: about 8,000 folders, 32 MB, before this) keeps none. Each open
handle holds a shared ``flock`` on ``PRESENCE`` in the folder for its lifetime; a closing handle
lets its share go and tries for the exclusive lock without waiting: if it gets it, no handle of
any process is attached, and it removes what is left (the sockets of dead processes, the writer
turn file, the presence file) and the folder. A handle that opened the presence file just before
it was removed finds, once it holds its share, that the file it locked is no longer the one at
that path, and attaches again. Everything in the folder is a hint or a fairness aid (sockets
here, turns in ``sqlite_writer_turn``), so even a lost race costs latency, never data. A handle
never closed lets go when its process exits normally (``atexit``); only a killed process leaves
its folder, until the next handle of that store closes.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable

#: How long a sender goes on using the socket list it last read (see the module docstring).
RESCAN_SECONDS = 0.05
#: The file every open handle of the store holds a shared lock on (see the module docstring).
PRESENCE = "handles.lock"


def _folder_for(path: str) -> str:
    digest = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"quick_queue-wake-{os.getuid()}", digest)


class CommitSignal:
    def __init__(self, db_path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = _folder_for(db_path)
        self._clock = clock  # monotonic seconds: when to rescan, and a waiter's age (tests)
        self._checked_at = -RESCAN_SECONDS  # when notify last looked at the folder
        self._bound_at = 0.0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listener_path = ""
        self._sender: socket.socket | None = None
        self._known_mtime = -1
        self._targets: list[str] = []
        self._pid = os.getpid()
        self._presence = _attach(self.folder)
        self._presence_pid = self._pid
        _attached.add(self)

    # -- waiting ----------------------------------------------------------------------------
    def _listen(self) -> socket.socket | None:
        if self._listener is not None and self._pid == os.getpid():
            return self._listener
        self._pid = os.getpid()  # after a fork, the parent's socket is not ours
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = os.path.join(self.folder, f"{os.getpid()}-{os.urandom(4).hex()}.sock")
            sock.bind(path)
        except OSError:
            return None
        self._listener, self._listener_path = sock, path
        self._bound_at = self._clock()
        return sock

    def wait(self, timeout: float) -> bool:
        """Block until a commit signal arrives (True) or ``timeout`` passes (False)."""
        with self._lock:
            fresh = self._listener is None or self._pid != os.getpid()
            sock = self._listen()
        if sock is None:
            raise OSError("commit signals are unavailable here")
        if fresh:
            # Commits made before the socket existed were not signalled: let the caller look.
            return True
        # Senders may not know this socket until RESCAN_SECONDS after its bind: until then,
        # return by that time as if signalled.
        young = self._bound_at + RESCAN_SECONDS - self._clock()
        capped = 0 < young < timeout
        sock.settimeout(young if capped else max(0.0, timeout))
        try:
            sock.recv(16)
        except (TimeoutError, BlockingIOError):
            return capped
        except OSError:
            return capped
        # Swallow signals that queued up meanwhile: the caller reads the store next.
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            while sock.recv(16):
                pass
        return True

    # -- signalling -------------------------------------------------------------------------
    def notify(self) -> None:
        """Tell every waiting process a commit happened. Cheap when nobody waits: a look at the
        clock, and a ``stat`` of the folder at most every ``RESCAN_SECONDS``."""
        now = self._clock()
        if now - self._checked_at >= RESCAN_SECONDS:
            self._checked_at = now
            self._rescan()
        targets = self._targets
        if not targets:
            return
        with self._lock:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            sender = self._sender
        for target in targets:
            try:
                sender.sendto(b"!", target)
            except BlockingIOError:
                pass  # its buffer is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                # A process that died without closing: remove its socket.
                with contextlib.suppress(OSError):
                    os.unlink(target)
                with self._lock:
                    self._targets = [t for t in self._targets if t != target]
            except OSError:
                pass

    def _rescan(self) -> None:
        """List the sockets again if the folder changed since the last look."""
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            with self._lock:
                self._targets, self._known_mtime = [], -1
            return
        with self._lock:
            if mtime != self._known_mtime:
                self._known_mtime = mtime
                try:
                    self._targets = [
                        os.path.join(self.folder, name)
                        for name in os.listdir(self.folder)
                        if name.endswith(".sock")
                    ]
                except OSError:
                    self._targets = []

    def close(self) -> None:
        with self._lock:
            if self._listener is not None and self._pid == os.getpid():
                self._listener.close()
                with contextlib.suppress(OSError):
                    os.unlink(self._listener_path)
            self._listener = None
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            presence, self._presence = self._presence, None
        if presence is None:
            return
        if self._presence_pid == os.getpid():
            _detach(self.folder, presence)
        else:  # a forked child's copy: the lock is its parent's (see _detach)
            os.close(presence)


#: The signals of this process that may still hold a share (see ``_let_go_at_exit``).
_attached: weakref.WeakSet[CommitSignal] = weakref.WeakSet()


@atexit.register
def _let_go_at_exit() -> None:
    """Handles never closed let their share go as the process ends, so the last one out still
    removes the folder (a test suite that leaves stores open would otherwise leave one each)."""
    for signal in list(_attached):
        with contextlib.suppress(Exception):
            signal.close()


def _attach(folder: str) -> int | None:
    """Hold a shared lock on the folder's presence file (made with the folder if need be); the
    open file, or None where the folder cannot be made (the folder is then never removed)."""
    path = os.path.join(folder, PRESENCE)
    for _attempt in range(10):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the folder was removed between the two calls: make it again
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except OSError:
            pass
        os.close(fd)  # a closing handle removed the file we locked: attach to the new one
    return None


def _detach(folder: str, fd: int) -> None:
    """Let this handle's share go; the last handle out removes the folder. Forked children
    share their parent's open file and lock: the folder is only removed by the process that
    attached (a child's copy of the handle closes without looking)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # another handle is attached (or locks are unsupported here): keep all
        return
    try:
        path = os.path.join(folder, PRESENCE)
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            for name in os.listdir(folder):
                if name != PRESENCE:
                    os.unlink(os.path.join(folder, name))
            os.unlink(path)
            os.rmdir(folder)
    except OSError:
        pass  # a new handle is making its files meanwhile: the folder is its now
    finally:
        os.close(fd)
