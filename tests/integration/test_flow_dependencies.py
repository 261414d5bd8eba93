"""Jobs that wait for other jobs (issue 13): ``enqueue(..., after=[...])``. A child runs only
once every parent completed; a dead parent buries it (or not, with ``on_parent_failure="run"``);
two parents settling at once release it exactly once."""

from __future__ import annotations

from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core import dependencies
from quick_queue.core.dequeue import dequeue
from quick_queue.core.settle import settle_many
from quick_queue.flow.summary import read_flow
from quick_queue.kv.errors import KVError
from quick_queue.models import to_us
from quick_queue.outcomes import Outcome, OutcomeKind
from tests.conftest import QueueFactory

ran: list[Any] = []


@qq.job(topic="dep:step", max_retries=0)
class Step:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        ran.append(payload)
        if payload == "boom":
            raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _clean() -> None:
    ran.clear()


def _drain(queue: qq.JobQueue) -> None:
    """Drain until nothing more runs: a child released by the settle that ends a drain (its
    last parent's, flushed at shutdown) runs in the next one."""
    for _ in range(10):
        before = len(ran)
        queue.drain(timeout=10)
        if len(ran) == before:
            return


def _state(queue: qq.JobQueue, tenant: str, job_id: str) -> str | None:
    info = queue.get_job(tenant, job_id)
    return None if info is None else info.state


def test_a_chain_of_three_runs_in_order(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    a = queue.enqueue("t", "dep:step", "a")
    b = queue.enqueue("t", "dep:step", "b", after=[a])
    c = queue.enqueue("t", "dep:step", "c", after=[b])
    assert _state(queue, "t", b) == _state(queue, "t", c) == "scheduled"  # waiting
    assert "waiting for other jobs: 2" in read_flow(queue.db, queue.layout).lines()
    assert queue.db.transact(dependencies.waiting_for, queue.layout, ("t", c)) == [("t", b)]
    _drain(queue)
    assert ran == ["a", "b", "c"]
    assert queue.stats().dead == 0
    assert read_flow(queue.db, queue.layout).waiting == 0


def test_fan_in_of_five_waits_for_the_last(make_queue: QueueFactory,
                                           clock: qq.ManualClock) -> None:
    queue = make_queue(Step)
    parents = [queue.enqueue("t", "dep:step", n) for n in range(4)]
    parents.append(queue.enqueue("other", "dep:step", 4, in_=60))  # another tenant, later
    child = queue.enqueue("t", "dep:step", "child",
                          after=[*parents[:4], ("other", parents[4])])
    _drain(queue)
    assert sorted(ran) == [0, 1, 2, 3] and _state(queue, "t", child) == "scheduled"
    clock.advance(61)
    _drain(queue)
    assert ran[-2:] == [4, "child"]


def test_a_dead_parent_buries_its_children_and_theirs(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    parent = queue.enqueue("t", "dep:step", "boom")
    child = queue.enqueue("t", "dep:step", "child", after=[parent])
    grandchild = queue.enqueue("t", "dep:step", "grandchild", after=[child])
    runs_anyway = queue.enqueue("t", "dep:step", "anyway", after=[parent],
                                on_parent_failure="run")
    _drain(queue)
    assert ran == ["boom", "anyway"]
    dead = {info.job_id: info for info in queue.dead_letters("t")}
    assert set(dead) == {parent, child, grandchild} and runs_anyway not in dead
    assert dead[child].dead_kind == "parent_failed"
    assert f"t/{parent}" in (dead[child].reason or "")
    assert f"t/{child}" in (dead[grandchild].reason or "")


def test_parents_already_finished_at_enqueue(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    done, failed = queue.enqueue("t", "dep:step", "done"), queue.enqueue("t", "dep:step", "boom")
    _drain(queue)
    ready = queue.enqueue("t", "dep:step", "after done", after=[done])
    assert _state(queue, "t", ready) == "ready"  # absent and not dead: completed
    buried = queue.enqueue("t", "dep:step", "after failed", after=[done, failed])
    assert _state(queue, "t", buried) == "dead"  # the rule applies at once
    anyway = queue.enqueue("t", "dep:step", "anyway", after=[failed], on_parent_failure="run")
    _drain(queue)
    assert ran[2:] == ["after done", "anyway"]
    assert _state(queue, "t", anyway) is None


def test_two_parents_settling_at_once_release_the_child_once(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Step)
    layout, db = queue.layout, queue.db
    p1, p2 = queue.enqueue("a", "dep:step", 1), queue.enqueue("b", "dep:step", 2)
    child = queue.enqueue("t", "dep:step", "child", after=[("a", p1), ("b", p2)])
    now = to_us(clock.now())
    outcomes = []
    for tenant in ("a", "b"):
        [job] = db.transact(lambda tr, t=tenant: dequeue(
            tr, layout, t, None, now, count=1, item_lease=10_000_000, promote_max=10,
            min_inactive=0, new_token=lambda t=t: f"token-{t}"))
        outcomes.append(Outcome(tenant, job.record.job_id, job.token, OutcomeKind.DONE,
                                topic="dep:step", lease_at=job.record.at))
    first, second = db.create_transaction(), db.create_transaction()
    assert settle_many(first, layout, [outcomes[0]], now, 0, 5) == [True]
    assert settle_many(second, layout, [outcomes[1]], now, 0, 5) == [True]
    first.commit()
    with pytest.raises(KVError):
        second.commit()  # both read the child's wait record: the second conflicts
    assert _state(queue, "t", child) == "scheduled"  # one parent done, one to go
    assert db.transact(settle_many, layout, [outcomes[1]], now, 0, 5) == [True]
    zone = layout.zone("t")
    entries = db.transact(lambda tr: tr.get_range(zone.ready, zone.ready + b"\xff"))
    assert [key.endswith(child.encode() + b"\x00") for key, _ in entries] == [True]
    assert db.transact(dependencies.waiting_for, layout, ("t", child)) is None
    _drain(queue)
    assert ran == ["child"]


def test_a_cancelled_parent_is_found_by_reconcile(make_queue: QueueFactory,
                                                  clock: qq.ManualClock) -> None:
    queue = make_queue(Step)
    parent = queue.enqueue("t", "dep:step", "never", in_=60)
    child = queue.enqueue("t", "dep:step", "child", after=[parent])
    assert queue.cancel("t", parent)  # ends outside a settle
    now = to_us(clock.now())
    assert queue.db.transact(dependencies.reconcile, queue.layout, b"", 10, now, 0) is None
    _drain(queue)
    assert ran == ["child"] and _state(queue, "t", child) is None


def test_a_queue_without_dependencies_writes_none_of_their_keys(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(Step)
    queue.enqueue("t", "dep:step", "x")
    _drain(queue)
    assert queue.db.transact(lambda tr: tr.get(dependencies.flag_key(queue.layout))) is None


@pytest.mark.parametrize(("after", "rule", "match"), [
    ("abc", "dead", "list of job ids"), ([""], "dead", "non-empty"),
    ([("t", "x", "y")], "dead", "pairs"), (["x"], "ignore", "on_parent_failure"),
])
def test_bad_after_is_refused(make_queue: QueueFactory, after: Any, rule: str,
                              match: str) -> None:
    with pytest.raises(qq.InvalidArgument, match=match):
        make_queue(Step).enqueue("t", "dep:step", 1, after=after, on_parent_failure=rule)


def test_a_chain_written_in_one_transaction(make_queue: QueueFactory) -> None:
    """Parents written earlier in the same transaction count as live: a whole workflow
    commits at once, or not at all."""
    queue = make_queue(Step)

    def workflow(tr: qq.Transaction) -> list[str]:
        first = queue.enqueue("t", "dep:step", 1, tr=tr)
        second = queue.enqueue("t", "dep:step", 2, tr=tr, after=[first])
        return [first, second, queue.enqueue("t", "dep:step", 3, tr=tr, after=[second])]

    ids = queue.db.transact(workflow)
    assert [_state(queue, "t", job_id) for job_id in ids] == ["ready", "scheduled", "scheduled"]
    _drain(queue)
    assert ran == [1, 2, 3]


def test_a_keyed_child_enqueued_twice_links_once(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    parent = queue.enqueue("t", "dep:step", "p")
    child = queue.enqueue("t", "dep:step", "c", after=[parent], key="child")
    assert queue.enqueue("t", "dep:step", "c", after=[parent], key="child") == child
    _drain(queue)
    assert ran == ["p", "c"]


def test_a_large_fan_out_is_released_in_bounded_transactions(
    make_queue: QueueFactory, clock: qq.ManualClock
) -> None:
    queue = make_queue(Step)
    parent = queue.enqueue("t", "dep:step", "p", in_=60)
    children = [queue.enqueue("t", "dep:step", n, after=[parent]) for n in range(5)]
    assert queue.cancel("t", parent)
    now = to_us(clock.now())
    queue.db.transact(dependencies.ended, queue.layout, [("t", parent)], now, 0, 2)
    states = [_state(queue, "t", job_id) for job_id in children]
    assert sorted(states) == ["ready"] * 2 + ["scheduled"] * 3  # two edges this time
    queue.db.transact(dependencies.reconcile, queue.layout, b"", 10, now, 0)  # the rest
    assert [_state(queue, "t", job_id) for job_id in children] == ["ready"] * 5
    assert read_flow(queue.db, queue.layout).waiting == 0


@qq.job(topic="dep:tx", transactional=True, max_retries=0)
class TxStep:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        ran.append(payload)


def test_a_transactional_parent_releases_its_child_in_its_own_commit(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue(TxStep, Step)
    parent = queue.enqueue("t", "dep:tx", "parent")
    child = queue.enqueue("t", "dep:step", "child", after=[parent])
    settled = queue.drain(timeout=10)
    assert settled.completed >= 1 and ran[0] == "parent"
    # the completion's transaction released the child: ready (or already run), not parked
    assert _state(queue, "t", child) in ("ready", None)
    assert not queue.db.transact(dependencies.waiting_for, queue.layout, ("t", child))
