"""A FoundationDB cluster of a test's own (``own_server``): one fdbserver process in
``tmp_path`` on a free port, configured ``single memory``; never the shared cluster. The binary
comes from ``QUICK_QUEUE_FDBSERVER`` or PATH, with ``fdbcli`` beside it; without them the test
is skipped with one line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _binaries() -> tuple[str, str] | str:
    """(fdbserver, fdbcli), or why they are not here."""
    server = os.environ.get("QUICK_QUEUE_FDBSERVER") or shutil.which("fdbserver")
    if not server or not os.access(server, os.X_OK):
        return ("no fdbserver: set QUICK_QUEUE_FDBSERVER to the binary (or put it on PATH) to "
                "run the tests that start a FoundationDB server of their own")
    cli = os.path.join(os.path.dirname(server), "fdbcli")
    cli = cli if os.access(cli, os.X_OK) else shutil.which("fdbcli") or ""
    if not cli:
        return f"no fdbcli beside {server} or on PATH: a test's own FoundationDB server needs it"
    return server, cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OwnServer:
    """A one-process FoundationDB cluster of this test's own."""

    server: str
    cli: str
    folder: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def cluster_file(self) -> Path:
        return self.folder / "fdb.cluster"

    def start(self) -> None:
        for sub in ("data", "logs"):
            (self.folder / sub).mkdir(exist_ok=True)
        address = f"127.0.0.1:{self.port}"
        with open(self.folder / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [self.server, "-p", address, "-l", address, "-C", str(self.cluster_file),
                 "-d", str(self.folder / "data"), "-L", str(self.folder / "logs")],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def fdbcli(self, command: str, timeout: int = 30) -> str:
        done = subprocess.run(
            [self.cli, "-C", str(self.cluster_file), "--exec", command, "--timeout",
             str(timeout)], capture_output=True, text=True, timeout=timeout + 15,
        )
        return done.stdout + done.stderr

    def wait_available(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "available" not in (said := self.fdbcli("status minimal", 10)):
            assert time.monotonic() < deadline, f"the test cluster never came up: {said}"
            time.sleep(0.1)  # the next fdbcli status (each call takes its own round trips)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[OwnServer]:
    found = _binaries()
    if isinstance(found, str):
        pytest.skip(found)
    try:
        from quick_queue.kv.fdb_load import load_fdb

        load_fdb()
    except Exception as error:  # noqa: BLE001 - no binding or client library: nothing to test
        pytest.skip(f"the FoundationDB client does not load here: {error}")
    folder = tmp_path / "cluster"
    folder.mkdir()
    server = OwnServer(found[0], found[1], folder, _free_port())
    server.cluster_file.write_text(f"killtest:{os.getpid()}@127.0.0.1:{server.port}\n")
    server.start()
    try:
        said = server.fdbcli("configure new single memory", 60)
        assert "Database created" in said or "already exists" in said, said
        server.wait_available()
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


