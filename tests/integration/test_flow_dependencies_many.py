"""``enqueue_many`` items with ``after=`` / ``on_parent_failure=``: the semantics of ``enqueue``'s
(a child runs once its parents completed; a dead parent buries it unless its rule is "run"),
parents given as job ids or as the index of an earlier item of the batch, the whole batch in one
transaction, and a bad ``after`` refused by item before anything is written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import quick_queue as qq
from quick_queue.core import dependencies
from quick_queue.producer_after import MAX_PARENTS
from tests.conftest import QueueFactory

# the handler, its journal (reset before each test) and the drain loop of the enqueue tests
from tests.integration.test_flow_dependencies import Step, _clean, _drain, _state, ran

__all__ = ["_clean"]  # an autouse fixture, imported to apply here too

def _item(payload: Any, tenant: str = "t", **options: Any) -> dict[str, Any]:
    return {"tenant": tenant, "topic": "dep:step", "payload": payload, **options}


def _stored(queue: qq.JobQueue) -> list[tuple[bytes, bytes]]:
    """Every key and value of the queue, its root cut off (to compare two queues)."""
    root = queue.layout.root
    rows = queue.db.transact(lambda tr: tr.get_range(root, root + b"\xff"))
    return [(key[len(root):], value) for key, value in rows]


def test_a_fan_out_and_its_join_in_one_batch(make_queue: QueueFactory,
                                             clock: qq.ManualClock) -> None:
    queue = make_queue(Step)
    earlier = queue.enqueue("other", "dep:step", "earlier", in_=60)  # another transaction
    ids = queue.enqueue_many([
        _item("fetch a"), _item("fetch b", tenant="b"), _item("parse", after=[0]),
        _item("join", after=[1, 2, ("other", earlier)]),
    ])
    assert [_state(queue, t, i) for t, i in zip("tbtt", ids, strict=True)] == [
        "ready", "ready", "scheduled", "scheduled"]
    assert queue.db.transact(dependencies.waiting_for, queue.layout, ("t", ids[3])) == [
        ("b", ids[1]), ("t", ids[2]), ("other", earlier)]
    _drain(queue)
    assert sorted(ran) == ["fetch a", "fetch b", "parse"]
    assert ran.index("parse") > ran.index("fetch a")
    assert _state(queue, "t", ids[3]) == "scheduled"  # still waits for the earlier job
    clock.advance(61)
    _drain(queue)
    assert ran[3:] == ["earlier", "join"]
    assert queue.stats().dead == 0


def test_a_dead_parent_applies_each_childs_rule(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    dead_before = queue.enqueue("t", "dep:step", "boom")
    _drain(queue)
    ids = queue.enqueue_many([
        _item("boom"),
        _item("child", after=[0]),
        _item("grandchild", after=[1]),
        _item("anyway", after=[0], on_parent_failure="run"),
        _item("after the dead one", after=[dead_before]),  # dead already: buried at once
        _item("anyway too", after=[dead_before], on_parent_failure="run"),
        _item("under the buried one", after=[4]),
    ])
    assert [_state(queue, "t", i) for i in ids[4:]] == ["dead", "ready", "dead"]
    _drain(queue)
    assert ran[0] == "boom" and sorted(ran[1:]) == ["anyway", "anyway too", "boom"]
    dead = {info.job_id: info for info in queue.dead_letters("t")}
    assert set(dead) == {dead_before, ids[0], ids[1], ids[2], ids[4], ids[6]}
    for child, parent in [(1, ids[0]), (2, ids[1]), (4, dead_before), (6, ids[4])]:
        assert dead[ids[child]].dead_kind == "parent_failed"
        assert f"t/{parent}" in (dead[ids[child]].reason or "")


@pytest.mark.parametrize(("after", "rule", "words"), [
    ("abc", "dead", "after= takes a list"),
    ([""], "dead", "non-empty"),
    ([("t", "x", "y")], "dead", "index of an earlier item"),
    ([2], "dead", "index 2 names no earlier item"),  # itself
    ([5], "dead", "index 5 names no earlier item"),
    ([-1], "dead", "index -1 names no earlier item"),
    ([True], "dead", "not True"),
    (["x"], "ignore", "on_parent_failure"),
    ([f"j{n}" for n in range(MAX_PARENTS + 1)], "dead", f"at most {MAX_PARENTS}"),
])
def test_a_bad_after_is_refused_by_item_and_nothing_is_written(
    make_queue: QueueFactory, after: Any, rule: str, words: str,
) -> None:
    queue = make_queue(Step)
    before = _stored(queue)
    items = [_item(0), _item(1, after=[0]),
             _item(2, after=after, on_parent_failure=rule), _item(3)]
    with pytest.raises(qq.InvalidArgument, match=r"^enqueue_many item 2: ") as refused:
        queue.enqueue_many(items)
    assert words in str(refused.value)
    assert _stored(queue) == before  # not one key of the batch, nor of its good items


def test_enqueues_refusal_and_a_batch_items_say_the_same(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    triple: Any = [("t", "x", "y")]
    with pytest.raises(qq.InvalidArgument) as alone:
        queue.enqueue("t", "dep:step", 1, after=triple)
    with pytest.raises(qq.InvalidArgument) as batched:
        queue.enqueue_many([_item(1, after=triple)])
    assert str(batched.value).replace(", or the index of an earlier item of the batch", "") \
        == f"enqueue_many item 0: {alone.value}"


def test_a_misspelt_rule_is_refused_without_after_too(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    with pytest.raises(qq.InvalidArgument, match='on_parent_failure is "dead"'):
        queue.enqueue("t", "dep:step", 1, on_parent_failure="rn")
    with pytest.raises(qq.InvalidArgument, match="enqueue_many item 1: on_parent_failure"):
        queue.enqueue_many([_item(0), _item(1, on_parent_failure="Run")])
    assert _stored(queue) == []  # nothing of the batch was written
    assert queue.enqueue("t", "dep:step", 2, on_parent_failure="run")  # a rule, no parents
    assert queue.enqueue_many([_item(3, on_parent_failure="dead")])


def test_a_batch_is_one_by_one_enqueues_in_one_transaction(make_queue: QueueFactory) -> None:
    """The same items, one seeded id maker: ``enqueue_many`` stores exactly what ``enqueue``
    called item by item in one transaction stores (keys, records, edges, counters)."""
    items = [
        _item("p", key="p"), _item("q", in_=30, priority=5), _item("c", after=[0, 1]),
        _item("x", key="p", after=[1]),  # the same key again: written once, as item 0 says
        _item("d", tenant="u", after=[2], on_parent_failure="run"),
        _item("e", after=[("u", "gone"), 3], key="e"),  # a job not there: completed
        _item("f", after=[]),
    ]
    batched, single = make_queue(Step, name="a", seed=7), make_queue(Step, name="b", seed=7)
    ids = batched.enqueue_many(items)

    def one_by_one(tr: qq.Transaction) -> list[str]:
        made: list[str] = []
        for item in items:
            fields = dict(item)
            after = [(items[p]["tenant"], made[p]) if isinstance(p, int) else p
                     for p in fields.pop("after", [])]
            made.append(single.enqueue(**fields, after=after or None, tr=tr))
        return made

    assert single.db.transact(one_by_one) == ids
    assert ids[3] == ids[0]
    assert _stored(batched) == _stored(single)
    assert [_state(batched, "t", i) for i in ids[:4]] == ["ready", "scheduled", "scheduled",
                                                         "ready"]


def test_a_keyed_batch_enqueued_twice_links_once(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    items = [_item("p", key="p"), _item("c", key="c", after=[0])]
    first = queue.enqueue_many(items)
    before = _stored(queue)
    assert queue.enqueue_many(items) == first
    assert _stored(queue) == before  # nothing written the second time
    _drain(queue)
    assert ran == ["p", "c"]


def test_a_failed_transaction_writes_none_of_the_batch(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)

    before = _stored(queue)

    def batch_then_fail(tr: qq.Transaction) -> None:
        queue.enqueue_many([_item("p"), _item("c", after=[0])], tr=tr)
        raise RuntimeError("the caller's own step fails")

    with pytest.raises(RuntimeError):
        queue.db.transact(batch_then_fail)
    assert _stored(queue) == before


def test_a_batch_without_after_writes_no_dependency_key(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    waits: dict[int, Any] = {}
    items: list[dict[str, Any] | tuple[Any, ...]] = [
        _item(1), ("t", "dep:step", 2), _item(3, key="k", priority=4),
        _item(4, on_parent_failure="run"),  # a rule without after= counts for nothing
    ]
    queue._producer().new_jobs(items, 0.0, waits)
    assert waits == {}  # enqueue_many then takes its plain path
    queue.enqueue_many(items)
    assert queue.db.transact(lambda tr: tr.get(dependencies.flag_key(queue.layout))) is None
    _drain(queue)
    assert sorted(ran) == [1, 2, 3, 4]


def test_enqueue_many_async_takes_after(make_queue: QueueFactory) -> None:
    queue = make_queue(Step)
    ids = asyncio.run(queue.enqueue_many_async([_item("p", in_=5), _item("c", after=[0])]))
    assert queue.db.transact(dependencies.waiting_for, queue.layout, ("t", ids[1])) == [
        ("t", ids[0])]
