"""Helpers of the conflict contract tests: did a commit go through, and a write committed by a
transaction of its own."""

from __future__ import annotations

from quick_queue.kv.api import Database, Transaction
from quick_queue.kv.errors import NOT_COMMITTED, KVError


def commits(tr: Transaction) -> bool:
    """Commit ``tr``: True if it committed, False on 1020; any other error fails the test."""
    try:
        tr.commit()
    except KVError as error:
        assert error.code == NOT_COMMITTED, error
        return False
    return True


def write_in_new(db: Database, key: bytes, value: bytes = b"w") -> None:
    tr = db.create_transaction()
    tr.set(key, value)
    tr.commit()
