"""Job ids and lease tokens: random by default, replayable from a seed (issue 8 item 11)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

import quick_queue as qq
from quick_queue import models
from quick_queue.ids import IdMaker
from quick_queue.keys import Layout
from quick_queue.kv.api import Database
from tests.support.corekit import T0, Core


@pytest.fixture(autouse=True)
def _unseeded_afterwards() -> Iterator[None]:
    yield
    models.seed_ids(None)


def _sequence() -> list[str]:
    return [models.new_job_id() for _ in range(3)] + [models.new_token() for _ in range(3)]


def test_seed_ids_replays_the_module_makers() -> None:
    models.seed_ids(42)
    first = _sequence()
    models.seed_ids(42)
    assert _sequence() == first
    models.seed_ids(43)
    assert _sequence() != first
    models.seed_ids(None)
    assert _sequence() != _sequence()  # random again


def test_ids_keep_their_shape_and_order() -> None:
    for maker in (IdMaker(), IdMaker(7)):
        ids = [maker.job_id() for _ in range(50)]
        assert ids == sorted(ids) and len(set(ids)) == 50
        assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
        assert len(maker.token()) == 16


_RUNS = itertools.count()


def _run(db: Database, seed: int) -> tuple[list[str], list[str]]:
    """Enqueue through the facade and lease through the core, with makers seeded ``seed``."""
    maker = IdMaker(seed)
    # a queue of its own per run: the same seed makes the same ids, which one queue would
    # take for the jobs it already holds
    queue = qq.JobQueue(db, name=f"seeded{next(_RUNS)}", clock=qq.ManualClock(T0 / 1e6))
    queue.context.new_job_id = maker.job_id
    ids = [queue.enqueue("t", "topic", {"n": n}) for n in range(3)]
    core = Core(db, Layout(queue.name))
    core.new_token = maker.token  # type: ignore[method-assign]
    tokens = [job.token for job in core.visit("t", T0, count=3)]
    return ids, tokens


def test_a_seeded_run_makes_the_same_ids_and_tokens(db: Database) -> None:
    assert _run(db, 5) == _run(db, 5)
    assert _run(db, 5) != _run(db, 6)
