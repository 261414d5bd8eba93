"""``Transaction.set_many`` (enqueue_many writes a batch's jobs with it) does what the same
``set`` calls do, on every engine: the values, their order (a key set twice keeps the last),
and an invalid write reported by the commit, as FoundationDB reports a bad ``set``."""

from __future__ import annotations

import pytest

import quick_queue as qq
from quick_queue.kv.api import Transaction
from quick_queue.kv.errors import KEY_OUTSIDE_LEGAL_RANGE, KVError

PREFIX = b"set-many/"


def read_all(db: qq.Database, prefix: bytes = PREFIX) -> list[tuple[bytes, bytes]]:
    return db.transact(lambda tr: list(tr.get_range(prefix, prefix + b"\xff")))


def test_set_many_is_the_same_sets(db: qq.Database) -> None:
    pairs = [(PREFIX + b"b", b"2"), (PREFIX + b"a", b"1"), (PREFIX + b"b", b"3"),
             (PREFIX + b"c", b"")]

    def write(tr: Transaction) -> bytes | None:
        tr.set_many(pairs)
        return tr.get(PREFIX + b"b")  # read-your-writes, as after set

    assert db.transact(write) == b"3"
    assert read_all(db) == [(PREFIX + b"a", b"1"), (PREFIX + b"b", b"3"), (PREFIX + b"c", b"")]


def test_an_invalid_pair_fails_the_commit_as_set_does(db: qq.Database) -> None:
    tr = db.create_transaction()
    tr.set_many([(PREFIX + b"refused/ok", b"1"), (b"\xffsystem", b"2")])
    with pytest.raises(KVError) as error:
        tr.commit()
    assert error.value.code == KEY_OUTSIDE_LEGAL_RANGE
    assert read_all(db, PREFIX + b"refused/") == []
