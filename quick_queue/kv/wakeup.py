"""Commit notifications between processes sharing one embedded database file.

An idle consumer must notice a new job within a few milliseconds without polling (polling every
millisecond costs several percent of a core per idle worker). Each waiting process binds a Unix
datagram socket in a folder derived from the database path; every commit sends one byte to each
socket there. A waiter blocks in ``recv`` with a timeout, so it uses no CPU while idle and wakes
within microseconds of a commit.

It is only a hint: a lost datagram (a full socket buffer, a folder other users cannot write)
costs latency, never correctness, because waiters also wake on their timeout and then read the
store. Sockets of dead processes refuse datagrams and are removed by the next sender.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading


def _folder_for(path: str) -> str:
    digest = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"quick_queue-wake-{os.getuid()}", digest)


class CommitSignal:
    def __init__(self, db_path: str) -> None:
        self.folder = _folder_for(db_path)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listener_path = ""
        self._sender: socket.socket | None = None
        self._known_mtime = -1
        self._targets: list[str] = []
        self._pid = os.getpid()

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
        sock.settimeout(max(0.0, timeout))
        try:
            sock.recv(16)
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            return False
        # Swallow signals that queued up meanwhile: the caller reads the store next.
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            while sock.recv(16):
                pass
        return True

    # -- signalling -------------------------------------------------------------------------
    def notify(self) -> None:
        """Tell every waiting process a commit happened. Cheap when nobody waits: one stat."""
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
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
            targets = self._targets
            if not targets:
                return
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
            except OSError:
                pass

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
