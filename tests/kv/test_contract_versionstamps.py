"""Contract: versionstamped keys and values (FoundationDB's placeholder convention, API >= 520).

A template holds 10 placeholder bytes and ends with their offset as 4 little-endian bytes; the
commit fills them with the 10-byte versionstamp (8-byte commit version and 2-byte order within
the batch, big-endian), which ``get_versionstamp()`` (asked before commit) resolves to.
"""

from __future__ import annotations

import struct
import threading
from typing import TYPE_CHECKING

import pytest

from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import NOT_COMMITTED, KVError

if TYPE_CHECKING:
    from conftest import Space

PLACEHOLDER = b"\x00" * 10


def stamped_key(head: bytes, tail: bytes = b"") -> bytes:
    return head + PLACEHOLDER + tail + struct.pack("<I", len(head))


def stamped_value(head: bytes, tail: bytes = b"") -> bytes:
    return head + PLACEHOLDER + tail + struct.pack("<I", len(head))


def test_versionstamped_key_and_value_share_the_commit_stamp(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set_versionstamped_key(stamped_key(space.k("log/"), b"/tail"), b"payload")
    tr.set_versionstamped_value(space.k("latest"), stamped_value(b"head:", b":tail"))
    future = tr.get_versionstamp()
    tr.commit()
    stamp = future.wait()
    assert isinstance(stamp, bytes) and len(stamp) == 10
    assert space.dump() == {
        space.k("latest"): b"head:" + stamp + b":tail",
        space.k("log/") + stamp + b"/tail": b"payload",
    }


def test_placeholder_at_the_start_or_end(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set_versionstamped_value(space.k("a"), stamped_value(b""))
    tr.set_versionstamped_value(space.k("b"), stamped_value(b"xyz"))
    tr.set_versionstamped_key(stamped_key(space.k("")), b"at-end")
    future = tr.get_versionstamp()
    tr.commit()
    stamp = future.wait()
    assert space.dump() == {
        space.k("a"): stamp,
        space.k("b"): b"xyz" + stamp,
        space.k(stamp): b"at-end",
    }


def test_stamps_are_unique_and_increase_across_commits(db: Database, space: Space) -> None:
    stamps = []
    for i in range(15):
        tr = db.create_transaction()
        tr.set_versionstamped_key(stamped_key(space.k("q/")), b"%d" % i)
        future = tr.get_versionstamp()
        tr.commit()
        stamps.append(future.wait())
    assert all(len(s) == 10 for s in stamps)
    assert stamps == sorted(set(stamps))  # strictly increasing
    # so versionstamped keys list in commit order
    rows = db.transact(lambda tr: tr.get_range_startswith(space.k("q/")))
    assert [v for _, v in rows] == [b"%d" % i for i in range(15)]


def test_stamp_asked_before_commit_resolves_after(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    future = tr.get_versionstamp()  # asked first, before any write
    tr.set(space.k("plain"), b"1")  # any write gives the commit a stamp
    tr.commit()
    stamp = future.wait()
    assert len(stamp) == 10
    assert future.wait() == stamp


def test_stamps_follow_the_read_version(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("x"), b"1")
    future = tr.get_versionstamp()
    tr.commit()
    commit_version = int.from_bytes(future.wait()[:8], "big")
    later = db.create_transaction().get_read_version()
    assert later >= commit_version


def test_read_only_commit_has_no_stamp(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.get(space.k("x"))
    future = tr.get_versionstamp()
    tr.commit()
    with pytest.raises(KVError):
        future.wait()


def test_failed_commit_has_no_stamp(db: Database, space: Space) -> None:
    k = space.k("x")
    tr = db.create_transaction()
    tr.get(k)
    tr.set_versionstamped_value(k, stamped_value(b"v"))
    future = tr.get_versionstamp()
    other = db.create_transaction()
    other.set(k, b"other")
    other.commit()
    with pytest.raises(KVError) as info:
        tr.commit()
    assert info.value.code == NOT_COMMITTED
    with pytest.raises(KVError):
        future.wait()
    assert space.read(k) == b"other"


def test_asking_for_the_stamp_after_commit_is_an_error(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set(space.k("x"), b"1")
    tr.commit()
    with pytest.raises(KVError):
        tr.get_versionstamp().wait()


@pytest.mark.parametrize("which", ["key", "value"])
@pytest.mark.parametrize("past", [1, 10_000, 2**32 - 1])
def test_placeholder_outside_the_template_is_refused(
    db: Database, space: Space, which: str, past: int
) -> None:
    head = space.k("k")
    # 10 bytes follow head: a placeholder starting past len(head) would run off the end
    offset = min(len(head) + past, 2**32 - 1)
    template = head + PLACEHOLDER + struct.pack("<I", offset)
    tr = db.create_transaction()
    if which == "key":  # no error here, as FoundationDB: the commit reports it
        tr.set_versionstamped_key(template, b"v")
    else:
        tr.set_versionstamped_value(space.k("v"), template)
    with pytest.raises(KVError) as info:
        tr.commit()
    if which == "key":  # FoundationDB checks a key template in the client (2000)
        assert info.value.code == 2000
    assert space.dump() == {}


def test_a_versionstamped_value_is_unreadable_before_commit(db: Database, space: Space) -> None:
    tr = db.create_transaction()
    tr.set_versionstamped_value(space.k("v"), stamped_value(b"x"))
    with pytest.raises(KVError) as info:
        tr.get(space.k("v"))
    assert info.value.code == 1036  # accessed_unreadable


def test_stamps_from_concurrent_threads_follow_the_commit_order(db: Database, space: Space) -> None:
    counter = space.k("counter")
    seen: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def bump(tr: Transaction) -> tuple[int, object]:
        value = int(tr.get(counter) or b"0") + 1
        tr.set(counter, b"%d" % value)
        tr.set_versionstamped_key(stamped_key(space.k("log/")), b"%d" % value)
        return value, tr.get_versionstamp()

    def worker() -> None:
        try:
            for _ in range(15):
                value, future = db.transact(bump)
                stamp = future.wait()  # type: ignore[attr-defined]
                with lock:
                    seen.append((value, stamp))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seen.sort()
    assert [v for v, _ in seen] == list(range(1, 61))  # serializable increments
    stamps = [s for _, s in seen]
    assert stamps == sorted(set(stamps))  # unique, and in the order the commits serialized
    rows = db.transact(lambda tr: tr.get_range_startswith(space.k("log/")))
    assert [v for _, v in rows] == [b"%d" % v for v in range(1, 61)]
