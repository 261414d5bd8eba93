"""Keys and values bound as ``bytearray`` copies (``sqlite_commit.BLOB_COPY``) are stored and
read back exactly as ``bytes``: every size around the copy limit, empty values (an empty blob,
never NULL), NUL bytes, through every read path and an atomic operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from quick_queue.kv.api import Transaction
from quick_queue.kv.sqlite_commit import BLOB_COPY
from quick_queue.kv.sqlite_engine import SQLiteDatabase

SIZES = (0, 1, BLOB_COPY - 1, BLOB_COPY, BLOB_COPY + 1, 3 * BLOB_COPY)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteDatabase]:
    database = SQLiteDatabase(str(tmp_path / "kv.db"))
    yield database
    database.close()


def test_values_of_every_size_round_trip_as_bytes(db: SQLiteDatabase) -> None:
    pairs = {b"k\x00%d" % size: bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
             for size in SIZES}

    def write(tr: Transaction) -> None:
        for key, value in pairs.items():
            tr.set(key, value)
        tr.add(b"n", (7).to_bytes(8, "little"))

    db.transact(write)
    db.transact(lambda tr: tr.add(b"n", (1).to_bytes(8, "little")))  # over the stored value
    keys = sorted(pairs)

    def read(tr: Transaction) -> tuple[list[bytes | None], list[tuple[bytes, bytes]], bytes | None]:
        return tr.get_many(keys), tr.get_range(b"k", b"l"), tr.get(keys[0])

    many, rows, one = db.transact(read)
    assert many == [pairs[key] for key in keys]
    assert rows == [(key, pairs[key]) for key in keys]
    assert one == pairs[keys[0]]
    assert all(type(value) is bytes for value in [*many, one, *(v for _k, v in rows)])
    assert db.transact(lambda tr: tr.get(b"n")) == (8).to_bytes(8, "little")
    empty = db.transact(lambda tr: tr.get(b"k\x000"))
    assert empty == b"" and empty is not None
