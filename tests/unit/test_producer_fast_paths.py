"""The producer's shortcuts (issue 10) make exactly what the general code makes: the payload's
JSON text and its errors (``quick_queue.jsoncodec``), a new job's stored value, its keys, the
checked jobs of an ``enqueue_many`` batch, and job ids that a forked process does not repeat."""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import quick_queue as qq
from quick_queue import keys
from quick_queue.core.enqueue import NewJob
from quick_queue.ids import IdMaker
from quick_queue.jobs import Registry
from quick_queue.jsoncodec import dump
from quick_queue.keys import Layout
from quick_queue.models import JobRecord
from quick_queue.producer import Producer
from quick_queue.settings import Settings

REFERENCE = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
NOW = 1_800_000_000.0

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(),
    st.text(alphabet=st.sampled_from("a\"\\\x00\x1f\x7f\u00e9\u4e2d\U0001f600\n/")),
)
json_data = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
flat_dicts = st.dictionaries(
    st.text(alphabet=st.characters(max_codepoint=0x80), max_size=6),
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
              st.text(alphabet=st.characters(max_codepoint=0x80))),
    max_size=6,
)


@given(json_data)
def test_dump_writes_the_standard_encoders_bytes(value: Any) -> None:
    assert dump(value) == REFERENCE.encode(value).encode()


@given(flat_dicts)
def test_a_flat_dict_is_written_as_the_standard_encoder_writes_it(value: dict[str, Any]) -> None:
    # the shape msgspec writes (ASCII, DEL and control characters included: the fallback)
    assert dump(value) == REFERENCE.encode(value).encode()


@pytest.mark.parametrize(
    "value",
    [{1: "int key", None: 0, 2.5: 1, False: 2}, ("a", "tuple"), {"sub": {"n": [1, 2.5]}},
     {"s": qq.JobMeta.__name__}, 10**40, "text", 1.5, None],
)
def test_dump_matches_for_what_json_converts(value: Any) -> None:
    assert dump(value) == REFERENCE.encode(value).encode()


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "value",
    [{"a": {1, 2}}, {"a": b"bytes"}, {"a": datetime(2030, 1, 1, tzinfo=UTC)},
     {"a": uuid.UUID(int=1)}, {"a": Decimal("1.5")}, {"a": math.nan}, [math.inf],
     {(1, 2): "tuple key"}, _circular(), object()],
)
def test_dump_refuses_what_json_refuses_with_its_error(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        REFERENCE.encode(value)
    with pytest.raises(type(expected.value), match=str(expected.value)):
        dump(value)


@given(
    st.text(min_size=1, max_size=20).filter(lambda t: t.isascii()) | st.sampled_from(
        ['100%', '%d%s%%', 'a","at":0,"sq":0,"e":0,"b', "caf\u00e9"]),
    st.integers(min_value=0, max_value=1000), st.none() | st.integers(min_value=0, max_value=99),
    st.sampled_from(["r", "s"]), st.integers(min_value=1, max_value=2**62),
)
def test_a_new_jobs_value_is_its_records_encoding(
    topic: str, priority: int, retries: int | None, state: str, due: int
) -> None:
    value = JobRecord.new_value("j", topic, priority, retries, state, due, due + 1, None, None,
                                b'{"i":1}')
    record = JobRecord("j", topic, None, priority, retries, state, due, due, due + 1,
                       payload_raw=b'{"i":1}')
    assert value == record.encode()


@given(st.integers(min_value=-(2**64) + 2, max_value=2**64 - 2))
def test_pack_int_is_pack(value: int) -> None:
    assert keys.pack_int(value) == keys.pack((value,))


@given(st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8))
def test_cached_keys_are_the_packed_ones(tenant: str, topic: str) -> None:
    layout = Layout("q")
    assert layout.marker(tenant) == layout.marker_prefix + keys.pack((tenant,))
    assert layout.stat(topic, "enqueued") == layout.stats_prefix + keys.pack((topic, "enqueued"))
    zone = layout.zone(tenant)
    assert zone.new_job_keys("j1", 7, 123_456, True) == (
        zone.item("j1"), zone.ready_key(7, 123_456, "j1"))
    assert zone.new_job_keys("j1", 7, 123_456, False) == (
        zone.item("j1"), zone.scheduled_key(123_456, "j1"))


class Order(pydantic.BaseModel):
    n: int


@qq.job(topic="plain")
class Plain:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


@qq.job(topic="urgent", priority=3, max_retries=7)
class Urgent:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        pass


@qq.job(topic="typed")
class Typed:
    Payload = Order

    def perform(self, payload: Order, meta: qq.JobMeta) -> None:
        pass


def producer(*handlers: type) -> Producer:
    return Producer(Registry(list(handlers)), Settings(), IdMaker(seed=1).job_id)


def without_id(job: NewJob) -> tuple[Any, ...]:
    return (job.tenant, job.topic, job.payload, job.priority, job.max_retries, job.due,
            job.key, job.trace, job.fresh)


ITEMS: list[Any] = [
    {"tenant": "a", "topic": "plain", "payload": {"i": 1}},
    {"tenant": "a", "topic": "urgent", "payload": {"text": "caf\u00e9", "n": 1.5}},
    {"tenant": "b", "topic": "typed", "payload": {"n": "2"}},  # the model makes it 2
    {"tenant": "b", "topic": "typed", "payload": Order(n=3)},
    {"tenant": "b", "topic": "plain", "payload": None},
    ("c", "urgent", [1, 2]),
    ("c", Urgent, {"i": 2}),  # a class as topic: new_job's path
    {"tenant": "a", "topic": "plain", "payload": {"i": 1}, "priority": 9},  # new_job's path
]


def test_a_batch_makes_the_jobs_enqueue_would_make() -> None:
    made = producer(Plain, Urgent, Typed).new_jobs(ITEMS, NOW)
    one = producer(Plain, Urgent, Typed)
    alone = [
        one.new_job(now=NOW, **item) if isinstance(item, dict)
        else one.new_job(item[0], item[1], item[2], NOW)
        for item in ITEMS
    ]
    assert [without_id(job) for job in made] == [without_id(job) for job in alone]
    assert [job.payload for job in made[2:4]] == [b'{"n":2}', b'{"n":3}']
    assert (made[1].priority, made[1].max_retries) == (3, 7)
    assert len({job.job_id for job in made}) == len(made)


def test_a_producer_without_handlers_batches_any_topic_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        made = producer().new_jobs([("a", "x", None), ("a", "x", {"i": 1})], NOW)
    assert [(job.payload, job.priority, job.max_retries) for job in made] == [
        (b"null", 100, None), (b'{"i":1}', 100, None)]


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        ({"tenant": "", "topic": "plain", "payload": 1}, qq.InvalidArgument,
         "tenant must be a non-empty"),
        ({"tenant": ["a"], "topic": "plain", "payload": 1}, qq.InvalidArgument, "tenant must be"),
        ({"tenant": "a" * 1001, "topic": "plain", "payload": 1}, qq.InvalidArgument,
         "tenant is 1001"),
        ({"tenant": "a", "topic": "t" * 1001, "payload": 1}, qq.InvalidArgument, "topic is 1001"),
        ({"tenant": "a", "topic": 7, "payload": 1}, qq.InvalidArgument, "topic must be"),
        ({"tenant": "a", "topic": "plain", "payload": {"s": {1}}}, qq.PayloadError,
         "not JSON-serialisable"),
        ({"tenant": "a", "topic": "typed", "payload": {"n": "x"}}, qq.PayloadError, "typed"),
        ({"tenant": "a", "topic": "plain", "payload": {"b": "x" * 100_000}}, qq.PayloadError,
         "at most"),
    ],
)
def test_a_bad_item_after_good_ones_raises_what_enqueue_raises(
    bad: dict[str, Any], error: type[Exception], words: str
) -> None:
    one = producer(Plain, Typed)
    with pytest.raises(error) as alone:
        one.new_job(now=NOW, **bad)
    assert words in str(alone.value)
    with pytest.raises(error) as batched:
        producer(Plain, Typed).new_jobs([{"tenant": "a", "topic": "plain", "payload": 1}] * 3
                                        + [bad], NOW)
    assert str(batched.value) == str(alone.value)


def test_a_batch_item_without_payload_carries_none_as_enqueue_does(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    queue = qq.JobQueue(db, jobs=[Plain], clock=clock)
    first = queue.enqueue("a", "plain")
    (second,) = queue.enqueue_many([{"tenant": "a", "topic": "plain", "priority": 5}])
    alone, batched = queue.get_job("a", first), queue.get_job("a", second)
    assert alone is not None and batched is not None
    assert (batched.payload, batched.priority) == (alone.payload, 5)


@pytest.mark.parametrize("item", [{"topic": "plain", "payload": 1}, {"tenant": "a"}, {}])
def test_a_batch_item_without_tenant_or_topic_is_refused_by_name(
    db: qq.Database, clock: qq.ManualClock, item: dict[str, Any]
) -> None:
    queue = qq.JobQueue(db, jobs=[Plain], clock=clock)
    with pytest.raises(qq.InvalidArgument, match="item 1 has no") as refused:
        queue.enqueue_many([("a", "plain", 1), item])
    for name in ("tenant", "topic"):
        assert (f"no {name}" in str(refused.value)) == (name not in item)
    assert queue.stats().ready == 0  # the good item before it was not written either


def test_a_batch_warns_of_each_misspelt_topic_at_the_callers_line(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    queue = qq.JobQueue(db, jobs=[Plain], clock=clock)
    with pytest.warns(qq.UnknownTopicWarning, match="'plian'") as record:
        queue.enqueue_many([("a", "plain", {}), ("a", "plian", {}), ("b", "plian", {})])
    assert record[0].filename == __file__


def test_a_forked_process_makes_other_ids_and_tokens() -> None:
    maker = IdMaker()
    maker.job_id(), maker.token()  # the parent's pools are full
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids' random tails and tokens, to the parent
        os.close(read)
        tails = [maker.job_id()[14:] for _ in range(20)] + [maker.token() for _ in range(20)]
        os.write(write, " ".join(tails).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {maker.job_id()[14:] for _ in range(20)} | {maker.token() for _ in range(20)}
    assert len(child) == 40 and not child & parent


def test_a_handler_registered_later_applies_to_the_next_enqueues(
    db: qq.Database, clock: qq.ManualClock
) -> None:
    queue = qq.JobQueue(db, clock=clock)  # no handlers yet: any topic, default options
    first = queue.enqueue("a", "urgent", {})
    queue.register(Urgent)  # the topic's options (priority 3, max_retries 7) from now on
    second = queue.enqueue("a", "urgent", {})
    third = queue.enqueue_many([("a", "urgent", {})])[0]
    with pytest.warns(qq.UnknownTopicWarning):  # the queue now has handlers: a check
        queue.enqueue("a", "other", {})
    shown = [queue.get_job("a", job_id) for job_id in (first, second, third)]
    assert [info.priority for info in shown if info is not None] == [100, 3, 3]
