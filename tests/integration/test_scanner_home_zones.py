"""The scanner with other consumers sharing the queue (``consumer.peers``): each leases the zones
at home with it, helps with the others' newest when it has none, and leaves no zone waiting
for a consumer that does not come."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import quick_queue as qq
from quick_queue.consumer.peers import OPEN_AFTER, STEAL_DEPTH, STEAL_TURN
from quick_queue.consumer.runner import Consumer
from quick_queue.core.pointers import scan_due_keys
from quick_queue.core.workers import WorkerInfo, beat
from tests.conftest import QueueFactory

WORKERS = ("w-a", "w-b", "w-c", "w-d")


@qq.job(topic="t")
class Noop:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def _consumers(queue: qq.JobQueue, workers: tuple[str, ...], slots: int) -> list[Consumer]:
    """One consumer a worker id, each with its live-worker record written."""
    now = queue.context.db.store_time()
    consumers = []
    for worker in workers:
        info = WorkerInfo(worker, "host", 1, now, now, now + 60, slots)
        queue.context.db.transact(lambda tr, info=info: beat(tr, queue.name, info, now))
        consumer = Consumer(queue.context, slots)
        consumer.scanner.peers.worker_id = worker
        consumers.append(consumer)
    return consumers


def _due(queue: qq.JobQueue) -> dict[str, bytes]:
    """tenant -> its due entry's key."""
    now = int(queue.context.db.store_time() * 1_000_000)
    keys, _ = queue.context.db.transact(scan_due_keys, queue.layout, now, 10_000)
    return {key.rsplit(b"\x02", 1)[1][:-1].decode(): key for key in keys}


def _leased(consumer: Consumer) -> list[str]:
    with consumer.inflight.cond:
        return [tenant for tenant, _ in consumer.inflight.entries]


def _home_tenants(
    queue: qq.JobQueue, index: int, count: int, many: int, prefix: str = "t"
) -> list[str]:
    """``many`` tenant names whose entry, due now, is at home with consumer ``index``."""
    now = int(queue.context.db.store_time() * 1_000_000)
    names = (f"{prefix}{n:04d}" for n in range(10_000))
    return [name for name in names
            if zlib.crc32(queue.layout.due(now, name)) % count == index][:many]


def test_each_consumer_leases_only_the_zones_at_home_with_it(make_queue: QueueFactory) -> None:
    queue = make_queue(Noop, selection_frac=1.0)
    queue.enqueue_many([(f"t{n:03d}", "t", {}) for n in range(90)])
    due = _due(queue)
    consumers = _consumers(queue, WORKERS[:3], 8)
    for index, consumer in enumerate(consumers):
        assert consumer.scanner.scan_once()[0] > 0
        leased = _leased(consumer)
        assert leased and all(zlib.crc32(due[t]) % 3 == index for t in leased), index


def test_a_consumer_with_nothing_at_home_takes_one_of_the_newest_zones(
    make_queue: QueueFactory,
) -> None:
    # 40 zones, all at home with the first of two consumers: the second draws one zone of the
    # newest quarter (10), whatever the seed (a draw from all 40 would leave it 1 in 4)
    for seed in range(10):
        queue = make_queue(Noop, seed=seed, name=f"seed{seed}")
        tenants = _home_tenants(queue, 0, 2, 40)
        queue.enqueue_many([(tenant, "t", {}) for tenant in tenants])
        newest = sorted(tenants, key=lambda t: queue.layout.due(0, t))[-10:]
        _, second = _consumers(queue, WORKERS[:2], 8)
        got, _, _ = second.scanner.scan_once()
        leased = _leased(second)
        assert got == 1 and len(leased) == 1 and leased[0] in newest, f"seed {seed}"


def test_a_consumer_with_nothing_at_home_in_the_head_reads_the_next_page(
    make_queue: QueueFactory,
) -> None:
    # the head (peek_max 10) holds only the first consumer's zones; the second's come after
    queue = make_queue(Noop, selection_frac=1.0, peek_max=10)
    first = _home_tenants(queue, 0, 2, 10, prefix="a")
    second = _home_tenants(queue, 1, 2, 5, prefix="z")
    queue.enqueue_many([(tenant, "t", {}) for tenant in first + second])
    _, consumer = _consumers(queue, WORKERS[:2], 8)
    got, _, _ = consumer.scanner.scan_once()
    assert got == 5 and sorted(_leased(consumer)) == sorted(second)  # its own, not one stolen


def test_zones_due_longer_than_open_after_are_every_consumers(
    make_queue: QueueFactory, clock: qq.ManualClock,
) -> None:
    # (the consumer they are at home with is busy, or gone without a word)
    queue = make_queue(Noop, selection_frac=1.0)
    tenants = _home_tenants(queue, 0, 2, 6)
    queue.enqueue_many([(tenant, "t", {}) for tenant in tenants])
    clock.advance(OPEN_AFTER / 1_000_000 + 1)
    _, second = _consumers(queue, WORKERS[:2], 8)
    got, _, _ = second.scanner.scan_once()
    assert got == 6 and sorted(_leased(second)) == sorted(tenants)


def test_the_only_due_zone_is_every_consumers(make_queue: QueueFactory) -> None:
    queue = make_queue(Noop)
    queue.enqueue_many([("busy", "t", {}) for _ in range(40)])
    consumers = _consumers(queue, WORKERS, 4)
    for consumer in consumers:  # (however their stealing slots fall: the zone is deep)
        got, _, _ = consumer.scanner.scan_once()
        assert got > 0 and set(_leased(consumer)) == {"busy"}


def test_a_running_consumer_draws_as_the_worker_its_heartbeat_registers(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Noop)
    consumer = Consumer(queue.context, 2)
    assert consumer.scanner.peers.worker_id is None  # (a drain keeps no record: alone)
    consumer.run(timeout=0.05)
    assert consumer.heartbeat is not None
    assert consumer.scanner.peers.worker_id == consumer.heartbeat.worker_id


def _now_us(queue: qq.JobQueue) -> int:
    return int(queue.context.db.store_time() * 1_000_000)


def _turns(make_queue: QueueFactory, clock: qq.ManualClock) -> Iterator[tuple[int, qq.JobQueue]]:
    """A new queue in each turn of the stealing slots, as many turns as consumers."""
    for turn in range(len(WORKERS)):
        clock.advance(STEAL_TURN / 1_000_000)
        yield turn, make_queue(Noop, name=f"turn{turn}")


def test_thieves_out_of_their_stealing_slot_leave_a_shallow_zone_to_its_owner(
    make_queue: QueueFactory, clock: qq.ManualClock,
) -> None:
    # two shallow zones (one job each), both at home with the first of four consumers: of the
    # three with nothing at home, those in the first two stealing slots take one zone each;
    # the others take nothing and look again soon, whatever the turn
    for turn, queue in _turns(make_queue, clock):
        tenants = _home_tenants(queue, 0, len(WORKERS), 2)
        queue.enqueue_many([(tenant, "t", {}) for tenant in tenants])
        owner, *thieves = _consumers(queue, WORKERS, 8)
        now = _now_us(queue)
        slot = {thief: (WORKERS.index(str(thief.scanner.peers.worker_id)) + now // STEAL_TURN)
                % len(WORKERS) for thief in thieves}
        for thief in sorted(thieves, key=slot.__getitem__, reverse=True):  # (out of slot first)
            got, due, wait = thief.scanner.scan_once()
            if slot[thief] < 2:
                assert got == 1, f"turn {turn}"
            else:
                assert (got, due, wait) == (0, True, 0.005), f"turn {turn}"
                assert not _leased(thief)
        stolen = [tenant for thief in thieves for tenant in _leased(thief)]
        assert owner.scanner.scan_once()[0] == 2 - len(stolen)
        assert sorted(stolen + _leased(owner)) == sorted(tenants)


def test_a_deep_zone_is_every_thiefs_whatever_its_slot(
    make_queue: QueueFactory, clock: qq.ManualClock,
) -> None:
    for turn, queue in _turns(make_queue, clock):
        # the deep zone is the newest due one (it is what a thief draws)
        shallow, deep = sorted(_home_tenants(queue, 0, len(WORKERS), 2),
                               key=lambda t: queue.layout.due(0, t))
        # (deep enough for every thief: a visit takes up to 8 jobs of it)
        queue.enqueue_many([(deep, "t", {})] * (STEAL_DEPTH + 8 * 3) + [(shallow, "t", {})])
        _, *thieves = _consumers(queue, WORKERS, 4)
        for thief in thieves:
            got, _, _ = thief.scanner.scan_once()
            assert got > 0 and _leased(thief)[0] == deep, f"turn {turn}"
