"""meta.LeaseFlag: ``threading.Event``'s interface for ``JobMeta.lease_lost``, its fields read
from the class until set (issue 10), so each flag must still be its own."""

from __future__ import annotations

import threading

from quick_queue.meta import JobMeta, LeaseFlag


def test_setting_one_flag_leaves_every_other_flag_unset() -> None:
    first, second = LeaseFlag(), LeaseFlag()
    first.set()
    assert first.is_set() and not second.is_set() and not LeaseFlag().is_set()
    assert first.wait(0) and not second.wait(0)


def test_a_waiter_wakes_when_another_thread_sets_the_flag() -> None:
    flag = LeaseFlag()
    waiting = threading.Event()
    woke: list[bool] = []

    def wait() -> None:
        waiting.set()
        woke.append(flag.wait(30))

    thread = threading.Thread(target=wait)
    thread.start()
    assert waiting.wait(30)
    flag.set()
    thread.join(30)
    assert woke == [True]


def test_each_job_meta_has_its_own_unset_flag() -> None:
    metas = [JobMeta("t", "topic", f"j{n}", 1, 3, 0, 0, 0) for n in range(2)]
    metas[0].lease_lost.set()
    assert metas[0].lease_lost.is_set() and not metas[1].lease_lost.is_set()
    assert metas[0].lease_lost is not metas[1].lease_lost
