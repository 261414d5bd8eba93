"""How the scanner batches its work (issue 10): it leases in batches while jobs are in flight,
and visits the zones a scan drew but had no slots for without scanning again."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.consumer import scanner as scanner_module
from quick_queue.consumer.inflight import QUICK_HANDLER, QUICK_PREFETCH, InFlight
from quick_queue.consumer.runner import Consumer
from quick_queue.core.dequeue import dequeue
from quick_queue.core.pointers import scan_due_keys
from quick_queue.kv.api import Transaction
from tests.conftest import QueueFactory


@qq.job(topic="t")
class Noop:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        return None


def _fill(flight: InFlight, count: int) -> None:
    with flight.cond:
        for n in range(count):
            flight.entries[("t", f"j{n}")] = object()  # type: ignore[assignment]


def test_an_idle_consumer_leases_at_once() -> None:
    assert InFlight(16).wants_more()


def test_while_jobs_are_in_flight_the_scanner_waits_for_a_batch_of_free_slots() -> None:
    flight = InFlight(16)  # 16 workers + 16 prefetched: leases again once 16 are free
    _fill(flight, 17)
    assert flight.free() == 15 and not flight.wants_more()
    flight = InFlight(16)
    _fill(flight, 16)
    assert flight.wants_more()


def test_without_prefetch_a_free_slot_is_leased_at_once() -> None:
    # a worker would wait otherwise: the jobs in flight do not fill every worker
    flight = InFlight(4, prefetch=0)
    _fill(flight, 3)
    assert flight.wants_more()
    flight = InFlight(4, prefetch=1)
    _fill(flight, 4)
    assert flight.wants_more()


def test_quick_handlers_deepen_the_default_prefetch_and_one_slow_call_undoes_it() -> None:
    flight = InFlight(16)
    assert flight.free() == 32  # nothing known yet: one prefetched job a worker
    with flight.cond:
        for _ in range(100):
            flight.note_handler(QUICK_HANDLER / 10)
    assert flight.free() == 16 * (1 + QUICK_PREFETCH)
    _fill(flight, 32)
    assert flight.wants_more()  # 32 free: the scanner leases a batch again
    with flight.cond:
        flight.note_handler(1.0)  # one slow call: a job leased here might wait a second
    assert flight.free() == 0 and not flight.wants_more()


def test_a_prefetch_given_explicitly_stays_as_given() -> None:
    flight = InFlight(4, prefetch=1)
    with flight.cond:
        for _ in range(100):
            flight.note_handler(0.0)
    assert flight.free() == 4 + 1


def test_a_drain_of_quick_jobs_learns_their_pace(make_queue: QueueFactory) -> None:
    queue = make_queue(Noop)
    queue.enqueue_many([("a", "t", {}) for _ in range(40)])
    consumer = Consumer(queue.context, 4, until_idle=True)
    summary = consumer.run(timeout=30)
    assert summary.completed == 40
    mean = consumer.inflight.handler_mean
    assert mean is not None and mean < QUICK_HANDLER
    assert consumer.inflight.free() == 4 * (1 + QUICK_PREFETCH)


def test_one_slot_each_still_leases_one_at_a_time() -> None:
    flight = InFlight(1)  # (the fairness figure: concurrency 1)
    _fill(flight, 1)
    assert flight.wants_more()


def test_zones_drawn_but_not_visited_are_visited_without_a_new_scan(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = make_queue(Noop)
    for n in range(30):  # 30 due zones of two jobs: a scan draws 3 (selection_frac 0.1)
        queue.enqueue(f"z{n:02d}", "t", {})
        queue.enqueue(f"z{n:02d}", "t", {})
    scans = []
    real = scan_due_keys

    def counting(*args: Any) -> Any:
        scans.append(1)
        return real(*args)

    monkeypatch.setattr(scanner_module, "scan_due_keys", counting)
    consumer = Consumer(queue.context, 1)  # two slots: one zone visit fills them
    scanner = consumer.scanner
    got, _, _ = scanner.scan_once()
    assert got == 2 and len(scans) == 1
    leftover = [tenant for tenant, _ in scanner._leftover]
    assert len(leftover) == 2
    with consumer.inflight.cond:  # one job settled: one slot free
        consumer.inflight.remove(next(iter(consumer.inflight.entries.values())))
    got, _, _ = scanner.scan_once()  # the next drawn zone, without a scan
    assert got == 1 and len(scans) == 1
    with consumer.inflight.cond:
        taken = {tenant for tenant, _ in consumer.inflight.entries}
    assert leftover[0] in taken


def _record_visit_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The id of each zone visit's transaction, in order, as the scanner dequeues."""
    transactions: list[int] = []
    real = dequeue

    def recording(tr: Any, *args: Any, **kwargs: Any) -> Any:
        transactions.append(id(tr))
        return real(tr, *args, **kwargs)

    monkeypatch.setattr(scanner_module, "dequeue", recording)
    return transactions


def test_zones_with_fewer_jobs_than_free_slots_share_one_transaction(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = make_queue(Noop, selection_frac=1.0)
    for tenant in ("a", "b", "c"):
        for _ in range(2):
            queue.enqueue(tenant, "t", {})
    transactions = _record_visit_transactions(monkeypatch)
    consumer = Consumer(queue.context, 4)  # eight slots: room for the three zones' six jobs
    got, _, _ = consumer.scanner.scan_once()
    assert got == 6
    assert len(transactions) == 3 and len(set(transactions)) == 1
    assert consumer.counters.get("zone_visits") == 3
    with consumer.inflight.cond:
        assert {tenant for tenant, _ in consumer.inflight.entries} == {"a", "b", "c"}


def test_a_zone_taken_elsewhere_does_not_stop_the_others_of_its_transaction(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Noop, selection_frac=1.0)
    for tenant in ("a", "b"):
        queue.enqueue(tenant, "t", {})
    consumer = Consumer(queue.context, 4)
    assert queue.context.claims.claim("a")  # another scanner of this process visits "a"
    got, _, _ = consumer.scanner.scan_once()
    assert got == 1
    with consumer.inflight.cond:
        assert {tenant for tenant, _ in consumer.inflight.entries} == {"b"}


def test_a_zone_whose_visit_fails_does_not_keep_the_others_of_its_transaction_waiting(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Noop, selection_frac=1.0)  # both zones drawn at each scan
    queue.enqueue("bad", "t", {})
    good = queue.enqueue("good", "t", {})

    def corrupt(tr: Transaction) -> None:  # the bad zone's visit raises when it reads this
        tr.set(queue.layout.pointer("bad"), b"\xff not a pointer")

    queue.db.transact(corrupt)
    summary = queue.drain(concurrency=4, timeout=3)  # (the bad zone stays due: it ends a drain)
    assert summary.completed == 1 and summary.extra.get("zone_errors", 0) >= 1
    assert queue.get_job("good", good) is None


def _quick(consumer: Consumer) -> None:
    """Make the consumer's table as deep as quick handlers make it."""
    with consumer.inflight.cond:
        for _ in range(100):
            consumer.inflight.note_handler(0.0)


def test_a_busy_zone_due_beside_others_takes_its_share_of_a_deep_table(
    make_queue: QueueFactory,
) -> None:
    # (the peers' fairness workload: one tenant's backlog ahead of one-job tenants)
    queue = make_queue(Noop, selection_frac=1.0)
    queue.enqueue_many([("busy", "t", {}) for _ in range(40)])
    queue.enqueue("small", "t", {})
    consumer = Consumer(queue.context, 2)
    _quick(consumer)
    assert consumer.inflight.free() == 2 * (1 + QUICK_PREFETCH)
    got, _, _ = consumer.scanner.scan_once()
    with consumer.inflight.cond:
        tenants = [tenant for tenant, _ in consumer.inflight.entries]
    assert tenants.count("busy") == scanner_module.ZONE_SHARE * 2
    assert tenants.count("small") == 1 and got == len(tenants)


def test_a_one_job_tenant_beside_a_backlog_is_visited_by_the_second_scan_at_the_latest(
    make_queue: QueueFactory,
) -> None:
    # (the tutorial's step 7: a stadium's backlog and the village's one latte.) A scan draws
    # one of two due zones; the draw after a visit passes over the zone just visited, so the
    # village waits behind one visit's share of the stadium at most, whatever the draws.
    for seed in range(20):
        queue = make_queue(Noop, seed=seed, name=f"seed{seed}")
        queue.enqueue_many([("stadium", "t", {}) for _ in range(200)])
        queue.enqueue("village", "t", {})
        consumer = Consumer(queue.context, 4)
        _quick(consumer)
        for _ in range(2):
            consumer.scanner.scan_once()
        with consumer.inflight.cond:
            tenants = [tenant for tenant, _ in consumer.inflight.entries]
        stadium = tenants.count("stadium")
        assert "village" in tenants, f"seed {seed}: two scans leased {stadium} stadium jobs only"
        assert tenants.index("village") <= scanner_module.ZONE_SHARE * 4, f"seed {seed}"


def test_the_only_due_zone_fills_every_free_slot(make_queue: QueueFactory) -> None:
    queue = make_queue(Noop, selection_frac=1.0)
    queue.enqueue_many([("busy", "t", {}) for _ in range(40)])
    consumer = Consumer(queue.context, 2)
    _quick(consumer)
    got, _, _ = consumer.scanner.scan_once()
    assert got == 2 * (1 + QUICK_PREFETCH) == 32


BIG = "x" * 20_000  # a payload of 20 kB: a record of a little more


def test_a_visit_leases_large_jobs_only_up_to_its_byte_budget(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (so a visit stays under FoundationDB's transaction size; ``VISIT_BYTES``)
    monkeypatch.setattr(scanner_module, "VISIT_BYTES", 50_000)
    queue = make_queue(Noop)
    queue.enqueue_many([("big", "t", {"blob": BIG}) for _ in range(10)])
    consumer = Consumer(queue.context, 4)
    _quick(consumer)
    got, _, _ = consumer.scanner.scan_once()
    assert got == 2  # 2 x ~20 kB fit in 50 kB, a third would not
    # the zone stayed due and the jobs left stayed ready: each next visit takes 2 more
    assert [consumer.scanner.scan_once()[0] for _ in range(5)] == [2, 2, 2, 2, 0]
    with consumer.inflight.cond:
        assert len(consumer.inflight.entries) == 10


def test_a_visit_takes_no_further_zone_once_its_byte_budget_is_spent(
    make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner_module, "VISIT_BYTES", 130_000)
    monkeypatch.setattr(scanner_module, "VALUE_LIMIT", 30_000)
    queue = make_queue(Noop, selection_frac=1.0)
    for tenant in ("a", "b", "c"):
        queue.enqueue_many([(tenant, "t", {"blob": BIG}) for _ in range(3)])
    transactions = _record_visit_transactions(monkeypatch)
    consumer = Consumer(queue.context, 4)
    _quick(consumer)
    got, _, _ = consumer.scanner.scan_once()
    # the first zone's 3 jobs (~60 kB), the second's 3 (~120 kB); ~10 kB left is less than a
    # record of the largest size: the third zone waits for a transaction of its own
    assert got == 9
    assert len(set(transactions[:2])) == 1 and transactions[2] != transactions[0]
