"""The embedded engine's worker-path shortcuts (issue 10) against plain models: the sorted index
of a transaction's written keys that range reads merge (kept up to date incrementally, emptied by
``clear_range``), the resolver's split of read ranges into points and spans, and clears written
as one ``DELETE ... IN`` per 16 keys."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from quick_queue.kv.conflicts import Range, WriteSet
from quick_queue.kv.sqlite_engine import SQLiteDatabase


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(str(tmp_path / "kv.db"))
    yield database
    database.close()


def test_range_reads_between_writes_in_any_order_see_every_write(db: SQLiteDatabase) -> None:
    rng = random.Random(7)
    tr = db.create_transaction()
    for i in range(0, 60, 3):
        tr.set(b"k%03d" % i, b"stored")
    tr.commit()
    model = {b"k%03d" % i: b"stored" for i in range(0, 60, 3)}
    tr = db.create_transaction()
    for step in range(300):
        key = b"k%03d" % rng.randrange(60)
        choice = rng.random()
        if choice < 0.45:
            tr.set(key, b"v%d" % step)
            model[key] = b"v%d" % step
        elif choice < 0.8:
            tr.clear(key)
            model.pop(key, None)
        elif choice < 0.85:
            begin, end = sorted((key, b"k%03d" % rng.randrange(60)))
            tr.clear_range(begin, end)
            for k in [k for k in model if begin <= k < end]:
                del model[k]
        begin, end = sorted((b"k%03d" % rng.randrange(61), b"k%03d" % rng.randrange(61)))
        limit = rng.choice([0, 1, 3])
        reverse = rng.random() < 0.5
        want = sorted(((k, v) for k, v in model.items() if begin <= k < end), reverse=reverse)
        got = tr.get_range(begin, end, limit=limit, reverse=reverse)
        assert got == (want[:limit] if limit else want), (step, begin, end, limit, reverse)


def _model_intersects(writes: list[Range], reads: list[Range]) -> bool:
    # (an empty range reads nothing: the engine never records one)
    return any(wb < re and rb < we for wb, we in writes for rb, re in reads if rb < re)


def test_resolver_split_matches_range_overlap() -> None:
    rng = random.Random(11)
    keys = [b"", b"a", b"a\x00", b"ab", b"b", b"b\x00", b"c"]

    def some_range() -> Range:
        key = rng.choice(keys)
        if rng.random() < 0.5:
            return key, key + b"\x00"
        return key, rng.choice(keys)

    for _ in range(2000):
        writes = [some_range() for _ in range(rng.randrange(4))]
        reads = [some_range() for _ in range(rng.randrange(1, 4))]
        ws = WriteSet()
        ws.add_all(writes)
        real = [(b, e) for b, e in writes if b < e]
        assert ws.intersects(reads) == _model_intersects(real, reads), (writes, reads)


def test_many_clears_in_one_commit_leave_only_the_rest(db: SQLiteDatabase) -> None:
    tr = db.create_transaction()
    for i in range(40):
        tr.set(b"c%02d" % i, b"x")
    tr.commit()
    tr = db.create_transaction()
    for i in range(0, 40, 2):  # 20 clears: one full DELETE of 16 keys and one of 4
        tr.clear(b"c%02d" % i)
    tr.commit()
    tr = db.create_transaction()
    assert [k for k, _ in tr.get_range(b"c", b"d")] == [b"c%02d" % i for i in range(1, 40, 2)]
