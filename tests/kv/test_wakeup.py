"""Commit signals between processes of one embedded store (``kv/wakeup.py``): a sender looks at
the folder of waiting sockets at most every ``RESCAN_SECONDS`` (a ``stat`` per commit cost
15-20 µs), so a socket bound since its last look is signalled only after that time, and until
then its ``wait`` returns by that time on its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quick_queue.kv.wakeup import RESCAN_SECONDS, CommitSignal

DEADLINE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
def signals(db_path: str) -> Iterator[list[CommitSignal]]:
    made: list[CommitSignal] = []
    yield made
    for signal in made:
        signal.close()


def test_a_sender_looks_at_the_folder_at_most_every_rescan_seconds(
    db_path: str, signals: list[CommitSignal]
) -> None:
    clock = Clock()
    sender = CommitSignal(db_path, clock=clock)
    waiter = CommitSignal(db_path)
    signals += [sender, waiter]
    sender.notify()  # looks: nobody waits yet
    assert waiter.wait(0.0)  # binds its socket; the first wait lets the caller look
    sender.notify()  # within RESCAN_SECONDS of its last look: the new socket is not known yet
    assert sender._targets == []
    clock.now += 2 * RESCAN_SECONDS
    sender.notify()
    assert len(sender._targets) == 1
    started = time.monotonic()
    assert waiter.wait(DEADLINE)  # the datagram is there
    assert time.monotonic() - started < DEADLINE / 2


def test_a_young_waiter_returns_by_rescan_seconds_after_its_bind(
    db_path: str, signals: list[CommitSignal]
) -> None:
    waiter = CommitSignal(db_path)
    signals.append(waiter)
    assert waiter.wait(0.0)
    started = time.monotonic()
    # nobody signals: a sender may not know the socket yet, so it returns (True) on its own
    assert waiter.wait(DEADLINE)
    assert time.monotonic() - started < DEADLINE / 2
    # once senders must know it, a wait without a signal times out (False)
    assert not waiter.wait(0.01)


def test_an_idle_waiter_is_woken_by_a_commit_of_another_thread(
    db_path: str, signals: list[CommitSignal]
) -> None:
    sender, waiter = CommitSignal(db_path), CommitSignal(db_path)
    signals += [sender, waiter]
    assert waiter.wait(0.0)
    while waiter.wait(0.01):  # until past its young time (each wait returns by then)
        pass
    woke = threading.Event()

    def wait() -> None:
        if waiter.wait(DEADLINE):
            woke.set()

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + DEADLINE
    while not woke.is_set() and time.monotonic() < deadline:
        sender.notify()
        woke.wait(0.005)
    thread.join(DEADLINE)
    assert woke.is_set()


def test_a_dead_waiters_socket_is_removed_by_the_sender(
    db_path: str, signals: list[CommitSignal]
) -> None:
    clock = Clock()
    sender, waiter = CommitSignal(db_path, clock=clock), CommitSignal(db_path)
    signals += [sender, waiter]
    assert waiter.wait(0.0)
    socket_path = waiter._listener_path
    assert waiter._listener is not None
    waiter._listener.close()  # a process that died: its socket file stays, nobody receives
    sender.notify()
    assert sender._targets == []
    assert not Path(socket_path).exists()
