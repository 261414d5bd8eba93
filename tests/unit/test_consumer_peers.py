"""Home zones (``consumer.peers``): how live consumers split the due entries between them."""

from __future__ import annotations

import zlib

import quick_queue as qq
from quick_queue.consumer.peers import OPEN_AFTER, REFRESH_SECONDS, STEAL_TURN, PeerView
from quick_queue.core.workers import WorkerInfo, beat

NOW = 1_800_000_000.0  # seconds, the store's time in these tests
NOW_US = int(NOW * 1_000_000)


def _register(db: qq.Database, queue: str, worker_id: str, *, expires: float = NOW + 15) -> None:
    info = WorkerInfo(worker_id, "host", 1, NOW, NOW, expires, 4)
    db.transact(lambda tr: beat(tr, queue, info, NOW))


def _view(db: qq.Database, queue: str, worker_id: str | None) -> PeerView:
    view = PeerView(queue, worker_id)
    db.transact(lambda tr: view.refresh(tr.snapshot, NOW))
    return view


def _due_keys(queue: qq.JobQueue, count: int, vesting: int = NOW_US) -> list[bytes]:
    return sorted(queue.layout.due(vesting, f"t{n:04d}") for n in range(count))


def _open_before(queue: qq.JobQueue) -> bytes:
    return queue.layout.due_until(NOW_US - OPEN_AFTER - 1)[1]


def test_consumers_that_see_the_same_workers_split_every_due_entry_once() -> None:
    db = qq.open("memory://")
    queue = qq.JobQueue(db, "q")
    for worker in ("w-a", "w-b", "w-c"):
        _register(db, "q", worker)
    views = [_view(db, "q", worker) for worker in ("w-a", "w-b", "w-c")]
    assert sorted((v.index, v.count) for v in views) == [(0, 3), (1, 3), (2, 3)]
    keys = _due_keys(queue, 600)
    homes = [set(v.homes(keys, len(keys), _open_before(queue))) for v in views]
    assert sum(len(h) for h in homes) == len(keys)
    assert set().union(*homes) == set(keys)
    assert all(150 < len(h) < 250 for h in homes)  # (crc32 spreads them: ~200 each)


def test_a_consumer_not_yet_in_the_records_counts_itself_in() -> None:
    db = qq.open("memory://")
    for worker in ("w-a", "w-c"):
        _register(db, "q", worker)
    view = _view(db, "q", "w-b")  # (its own first heartbeat not written yet)
    assert (view.index, view.count) == (1, 3)


def test_a_lapsed_worker_record_is_not_a_consumer() -> None:
    db = qq.open("memory://")
    _register(db, "q", "w-a")
    _register(db, "q", "w-dead", expires=NOW - 1)
    _register(db, "other-queue", "w-x")
    view = _view(db, "q", "w-a")
    assert (view.index, view.count) == (0, 1)


def test_without_a_worker_record_every_entry_is_home() -> None:
    db = qq.open("memory://")
    queue = qq.JobQueue(db, "q")
    _register(db, "q", "w-a")
    view = _view(db, "q", None)  # (a drain keeps no record)
    keys = _due_keys(queue, 50)
    assert view.count == 1 and not view.due()
    assert view.homes(keys, 5, _open_before(queue)) == keys


def test_home_entries_come_oldest_first_and_at_most_as_many_as_wanted() -> None:
    db = qq.open("memory://")
    queue = qq.JobQueue(db, "q")
    for worker in ("w-a", "w-b"):
        _register(db, "q", worker)
    view = _view(db, "q", "w-b")
    keys = _due_keys(queue, 200)
    own = [key for key in keys if zlib.crc32(key) % 2 == view.index]
    assert view.homes(keys, 7, _open_before(queue)) == own[:7]


def test_an_entry_due_longer_than_open_after_is_every_consumers() -> None:
    db = qq.open("memory://")
    queue = qq.JobQueue(db, "q")
    for worker in ("w-a", "w-b", "w-c", "w-d"):
        _register(db, "q", worker)
    views = [_view(db, "q", worker) for worker in ("w-a", "w-b", "w-c", "w-d")]
    waiting = _due_keys(queue, 20, vesting=NOW_US - OPEN_AFTER - 5)
    fresh = _due_keys(queue, 40)
    keys = sorted(waiting + fresh)
    for view in views:
        homes = view.homes(keys, len(keys), _open_before(queue))
        assert homes[:20] == waiting  # every consumer's, whoever's home they are
        assert all(zlib.crc32(key) % 4 == view.index for key in homes[20:])


def test_the_view_is_read_again_after_its_interval_and_after_a_lost_race() -> None:
    db = qq.open("memory://")
    _register(db, "q", "w-a")
    now = [100.0]
    view = PeerView("q", "w-a", clock=lambda: now[0])
    assert view.due()  # never read
    db.transact(lambda tr: view.refresh(tr.snapshot, NOW))
    assert not view.due()
    now[0] += REFRESH_SECONDS - 0.01
    assert not view.due()
    now[0] += 0.02
    assert view.due()
    db.transact(lambda tr: view.refresh(tr.snapshot, NOW))
    _register(db, "q", "w-b")  # another consumer starts
    assert not view.due() and view.count == 1
    view.forget()  # (a lost race)
    assert view.due()
    db.transact(lambda tr: view.refresh(tr.snapshot, NOW))
    assert (view.index, view.count) == (0, 2)


def test_consumers_that_see_the_same_workers_hold_distinct_stealing_slots_each_in_turn() -> None:
    db = qq.open("memory://")
    workers = ("w-a", "w-b", "w-c", "w-d")
    for worker in workers:
        _register(db, "q", worker)
    views = [_view(db, "q", worker) for worker in workers]
    first_slots: dict[str, int] = {}
    for turn in range(len(workers)):
        for offset in (0, STEAL_TURN - 1):  # (a slot is held for a whole turn)
            now = NOW_US - NOW_US % STEAL_TURN + turn * STEAL_TURN + offset
            slots = [view.steal_slot(now) for view in views]
            assert sorted(slots) == [0, 1, 2, 3]
        for worker, slot in zip(workers, slots, strict=True):
            if slot == 0:
                first_slots[worker] = turn
    assert sorted(first_slots) == sorted(workers)  # each held the first slot once in 4 turns
