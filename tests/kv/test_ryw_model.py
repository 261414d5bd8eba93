"""Property: the embedded engine's read-your-writes view equals a plain dict model.

Random sequences of set / clear / clear_range / atomic add, max, min / get / get_range (limit,
reverse, snapshot) inside one transaction, with commits and resets in between; after each commit
a fresh transaction must read exactly the model's committed state.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import quick_queue.kv as kv
from quick_queue.kv.api import Database, Transaction

PREFIX = b"m/"
# short keys that sort next to each other: the edges of ranges and clears are where bugs live
SUFFIXES = [b"", b"a", b"a\x00", b"ab", b"b", b"c"]
ENDPOINTS = [*SUFFIXES, b"\x00", b"b\xff", b"\xff"]

KEYS = [PREFIX + s for s in SUFFIXES]
CHECKED_RANGES = [
    (PREFIX, PREFIX + b"\xff"),
    (PREFIX + b"a", PREFIX + b"b\xff"),
    (PREFIX + b"a\x00", PREFIX + b"c"),
]

keys = st.sampled_from(SUFFIXES).map(lambda s: PREFIX + s)
endpoints = st.sampled_from(ENDPOINTS).map(lambda s: PREFIX + s)
values = st.binary(max_size=4)
stored_values = st.binary(min_size=1, max_size=4)  # non-empty: b"" is 0 to add, max and min
params = st.binary(min_size=1, max_size=3)


# -- an independent model of FoundationDB's atomic operations --------------------------------
def _as_int(value: bytes, width: int) -> int:
    return int.from_bytes(value[:width].ljust(width, b"\x00"), "little")


def model_op(op: str, existing: bytes | None, param: bytes) -> bytes:
    width = len(param)
    if op == "add":
        total = _as_int(existing or b"", width) + _as_int(param, width)
        return (total % (1 << (8 * width))).to_bytes(width, "little")
    if existing is None:
        return param
    old, new = _as_int(existing, width), _as_int(param, width)
    keep_old = old >= new if op == "max" else old <= new
    return old.to_bytes(width, "little") if keep_old else param


class ReadYourWrites(RuleBasedStateMachine):
    db: Database
    tr: Transaction

    @initialize(data=st.dictionaries(keys, stored_values, max_size=6))
    def open_database(self, data: dict[bytes, bytes]) -> None:
        self.db = kv.open("memory://")
        tr = self.db.create_transaction()
        for key, value in data.items():
            tr.set(key, value)
        tr.commit()
        self.tr = self.db.create_transaction()
        self.committed: dict[bytes, bytes] = dict(data)
        self.view: dict[bytes, bytes] = dict(data)
        self.dirty = False

    def teardown(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()

    # -- writes ---------------------------------------------------------------------------
    @rule(key=keys, value=values)
    def set(self, key: bytes, value: bytes) -> None:
        self.tr.set(key, value)
        self.view[key] = value
        self.dirty = True

    @rule(key=keys)
    def clear(self, key: bytes) -> None:
        self.tr.clear(key)
        self.view.pop(key, None)
        self.dirty = True

    @rule(a=endpoints, b=endpoints)
    def clear_range(self, a: bytes, b: bytes) -> None:
        begin, end = min(a, b), max(a, b)
        self.tr.clear_range(begin, end)
        for key in [k for k in self.view if begin <= k < end]:
            del self.view[key]
        self.dirty = True

    @rule(op=st.sampled_from(["add", "max", "min"]), key=keys, param=params)
    def atomic(self, op: str, key: bytes, param: bytes) -> None:
        getattr(self.tr, op)(key, param)
        self.view[key] = model_op(op, self.view.get(key), param)
        self.dirty = True

    # -- reads ----------------------------------------------------------------------------
    @rule(key=keys, snapshot=st.booleans())
    def get(self, key: bytes, snapshot: bool) -> None:
        reader = self.tr.snapshot if snapshot else self.tr
        assert reader.get(key) == self.view.get(key)

    @rule(
        a=endpoints,
        b=endpoints,
        limit=st.integers(min_value=0, max_value=4),
        reverse=st.booleans(),
        snapshot=st.booleans(),
    )
    def get_range(self, a: bytes, b: bytes, limit: int, reverse: bool, snapshot: bool) -> None:
        begin, end = min(a, b), max(a, b)
        expected = sorted(
            ((k, v) for k, v in self.view.items() if begin <= k < end), reverse=reverse
        )
        if limit:
            expected = expected[:limit]
        reader = self.tr.snapshot if snapshot else self.tr
        assert reader.get_range(begin, end, limit=limit, reverse=reverse) == expected

    @invariant()
    def every_read_matches(self) -> None:
        """After every step: each key, and ranges with every small limit both ways."""
        reader = self.tr.snapshot
        for key in KEYS:
            assert reader.get(key) == self.view.get(key)
        for begin, end in CHECKED_RANGES:
            expected = sorted((k, v) for k, v in self.view.items() if begin <= k < end)
            for limit in (0, 1, 2, 3):
                want = expected[:limit] if limit else expected
                assert reader.get_range(begin, end, limit=limit) == want
                want = expected[::-1][:limit] if limit else expected[::-1]
                assert reader.get_range(begin, end, limit=limit, reverse=True) == want

    # -- life cycle -----------------------------------------------------------------------
    @rule()
    def commit(self) -> None:
        self.tr.commit()
        self.committed = dict(self.view)
        self.tr = self.db.create_transaction()
        fresh = self.db.create_transaction()
        assert dict(fresh.get_range(PREFIX, PREFIX + b"\xff")) == self.committed
        for key in SUFFIXES:
            assert fresh.get(PREFIX + key) == self.committed.get(PREFIX + key)
        fresh.commit()
        self.dirty = False

    @precondition(lambda self: self.dirty)
    @rule()
    def reset(self) -> None:
        self.tr.reset()
        self.view = dict(self.committed)
        self.dirty = False


ReadYourWrites.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReadYourWrites = ReadYourWrites.TestCase
