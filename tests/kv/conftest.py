"""Fixtures of the key-value contract suite: one ``db`` per engine, one key space per test.

Every contract test takes ``db`` (parametrized over the engines) and ``space`` (a fresh random
key prefix on that database, cleared after the test), and builds all its keys with
``space.k(...)``, so the same test runs unchanged against a shared FoundationDB cluster.

Engines:

* ``sqlite``: a fresh ``sqlite:///<tmp_path>/kv.db`` file (durable settings, the default);
* ``memory``: ``memory://``;
* ``fdb``: the cluster named by ``QUICK_QUEUE_FDB_CLUSTER_FILE`` (or the default cluster file
  ``/etc/foundationdb/fdb.cluster``) when it opens; skipped otherwise.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import quick_queue.kv as kv
from quick_queue.kv.api import Database, KeyValue, Transaction, strinc
from quick_queue.kv.sqlite_transaction import SQLiteTransaction
from tests.fdb import cluster

ENGINES = ("sqlite", "memory", "fdb")
DEFAULT_CLUSTER_FILE = "/etc/foundationdb/fdb.cluster"
FDB_SKIP = (
    "no FoundationDB cluster: set QUICK_QUEUE_FDB_CLUSTER_FILE to run the contract suite "
    "against one"
)


def fdb_cluster_file() -> str | None:
    named = os.environ.get("QUICK_QUEUE_FDB_CLUSTER_FILE")
    if named:
        return os.path.abspath(named)
    if os.path.exists(DEFAULT_CLUSTER_FILE):
        return DEFAULT_CLUSTER_FILE
    return None


_CLUSTER: dict[str, str | None] = {}


def fdb_unavailable() -> str | None:
    """Why the FoundationDB legs cannot run here (None: they can). Asked once per session: with
    a cluster file, one bounded attempt to open it."""
    if "why" not in _CLUSTER:
        cluster_file = fdb_cluster_file()
        why: str | None = None
        if cluster_file is None:
            why = FDB_SKIP
        else:
            try:
                kv.open("fdb://" + cluster_file).close()
            except Exception as error:  # noqa: BLE001 - any failure to open: no cluster here
                why = f"{FDB_SKIP} ({cluster_file} did not open: {error})"
        _CLUSTER["why"] = why
    return _CLUSTER["why"]


@pytest.fixture(scope="session")
def fdb_url() -> str:
    """The URL of the FoundationDB cluster that opened (tests asking for it are left out at
    collection when none did)."""
    why = fdb_unavailable()
    if why is not None:
        pytest.skip(why)
    return "fdb://" + str(fdb_cluster_file())


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.fdb] if name == "fdb" else []) for name in ENGINES
    ],
)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a reachable cluster, the FoundationDB legs of this folder are left out at
    collection and reported in one line (tests/conftest.py's ``pytest_terminal_summary``), not
    one skip per test."""
    here = Path(__file__).parent
    if not any(
        item.get_closest_marker("fdb") is not None and here in Path(str(item.path)).parents
        for item in items
    ):
        return
    why = fdb_unavailable()
    if why is None:
        return
    dropped = [
        item for item in items
        if item.get_closest_marker("fdb") is not None and here in Path(str(item.path)).parents
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        kept = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in kept]
        cluster.left_out("kv contract tests", len(dropped), why)


@pytest.fixture
def db(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    if engine == "sqlite":
        database = kv.open(f"sqlite:///{tmp_path}/kv.db")
    elif engine == "memory":
        database = kv.open("memory://")
    else:
        database = kv.open(request.getfixturevalue("fdb_url"))
    try:
        yield database
    finally:
        database.close()


@dataclass(frozen=True)
class Space:
    """A random key prefix on ``db``: ``k(...)`` builds keys in it; ``begin``/``end`` bound it."""

    db: Database
    prefix: bytes

    def k(self, *parts: bytes | str) -> bytes:
        return self.prefix + b"".join(p.encode() if isinstance(p, str) else p for p in parts)

    @property
    def begin(self) -> bytes:
        return self.prefix

    @property
    def end(self) -> bytes:
        return strinc(self.prefix)

    def read(self, key: bytes) -> bytes | None:
        return self.db.transact(lambda tr: tr.get(key))

    def write(self, key: bytes, value: bytes) -> None:
        def put(tr: Transaction) -> None:
            tr.set(key, value)

        self.db.transact(put)

    def write_many(self, items: dict[bytes, bytes]) -> None:
        def put(tr: Transaction) -> None:
            for key, value in items.items():
                tr.set(key, value)

        self.db.transact(put)

    def dump(self) -> dict[bytes, bytes]:
        """Everything in the space, read in a new transaction."""
        rows: list[KeyValue] = self.db.transact(lambda tr: tr.get_range(self.begin, self.end))
        return dict(rows)

    def clear(self) -> None:
        def wipe(tr: Transaction) -> None:
            tr.clear_range(self.begin, self.end)

        self.db.transact(wipe)


@pytest.fixture
def space(db: Database) -> Iterator[Space]:
    """A fresh key prefix on ``db``, cleared after the test (which matters on a shared cluster)."""
    prefix = b"qq-test/" + uuid.uuid4().hex[:12].encode() + b"/"
    area = Space(db, prefix)
    yield area
    try:
        area.clear()
    except kv.KVError:  # a test that closed or broke its database leaves nothing to clean
        pass


def _age(tr: Transaction, seconds: float) -> None:
    if isinstance(tr, SQLiteTransaction):
        tr._created -= seconds
        tr._read_at -= seconds
    else:
        time.sleep(seconds)


@pytest.fixture
def age() -> Callable[[Transaction, float], None]:
    """``age(tr, seconds)`` makes ``tr`` that much older: moved clocks on the embedded engine, a
    real wait on the others (so only ever asked for small values)."""
    return _age
