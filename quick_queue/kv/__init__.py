"""The transactional key-value layer: FoundationDB's semantics on two engines.

``open(url)`` picks the engine from the URL:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: the embedded engine, a
  durable SQLite file several processes may share; ``?synchronous=NORMAL`` trades the last
  commits on power loss for speed (``FULL`` is the default).
* ``memory://``: the same engine on a temporary file removed at ``close()``, for tests and demos.
* ``fdb://`` (the default cluster file) or ``fdb:///etc/foundationdb/fdb.cluster``: FoundationDB.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from quick_queue.kv.api import (
    Database,
    KeyValue,
    ReadView,
    Transaction,
    TransactionOptions,
    VersionstampFuture,
    as_database,
    as_transaction,
    strinc,
    transactional,
)
from quick_queue.kv.errors import (
    ClientLibraryMissing,
    KVError,
    QuickQueueError,
    StorageError,
    is_retryable,
    maybe_committed,
)
from quick_queue.kv.sqlite_engine import SQLiteDatabase

__all__ = [
    "ClientLibraryMissing",
    "Database",
    "KVError",
    "KeyValue",
    "QuickQueueError",
    "ReadView",
    "SQLiteDatabase",
    "StorageError",
    "Transaction",
    "TransactionOptions",
    "VersionstampFuture",
    "as_database",
    "as_transaction",
    "is_retryable",
    "maybe_committed",
    "open",
    "strinc",
    "transactional",
]

ACCEPTED_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db "
    "(optionally ?synchronous=FULL|NORMAL), memory://, fdb://, fdb:///path/to/fdb.cluster"
)


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"bad database URL {url!r}: {why}. Accepted forms: {ACCEPTED_FORMS}")


def open(url: str) -> Database:  # noqa: A001 - the documented name, like fdb.open
    """Open the database ``url`` names (see the module docstring for the forms)."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "no scheme")
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise _bad(url, "a file path must follow 'sqlite:///'")
        path = rest[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
        if path in (":memory:", ""):
            raise _bad(url, "use memory:// for an ephemeral database")
        synchronous = params.pop("synchronous", "FULL").upper()
        if params:
            raise _bad(url, f"unknown option(s) {', '.join(sorted(params))}")
        if synchronous not in ("FULL", "NORMAL"):
            raise _bad(url, "synchronous must be FULL or NORMAL")
        return SQLiteDatabase(path, synchronous=synchronous)
    if scheme == "memory":
        if rest.strip("/") or params:
            raise _bad(url, "memory:// takes no path or options")
        return SQLiteDatabase("", ephemeral=True, synchronous="OFF")
    if scheme == "fdb":
        if params:
            raise _bad(url, f"unknown option(s) {', '.join(sorted(params))}")
        if rest and not rest.startswith("/"):
            raise _bad(url, "the cluster file must be an absolute path: fdb:///path/fdb.cluster")
        cluster_file = rest or None
        from quick_queue.kv.fdb import open_fdb

        return open_fdb(cluster_file)
    raise _bad(url, f"unknown scheme {scheme!r}")
