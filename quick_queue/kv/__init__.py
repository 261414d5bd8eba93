"""The transactional key-value layer: FoundationDB's semantics on two engines.

``open(url)`` picks the engine from the URL:

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: the embedded engine, a
  durable SQLite file several processes may share; ``?synchronous=NORMAL`` trades the last
  commits on power loss for speed (``FULL`` is the default).
* ``memory://``: the same engine on a temporary file removed at ``close()``, for tests and demos.
* ``fdb://`` (the default cluster file) or ``fdb:///etc/foundationdb/fdb.cluster``: FoundationDB
  (``pip install "quick-queue[fdb]"``, the binding pinned to the server's release: see
  ``kv.fdb_load``).

``open(url, read_only=True)`` reads an existing store without writing to it; an existing SQLite
file of another application is refused unless ``adopt=True``; ``clock=`` replaces the engine's
time (``Database.store_time()``, the one time every process compares leases against) in tests.
Errors: ``kv.errors`` (``is_retryable`` and ``maybe_committed`` as FoundationDB classifies,
``is_transient`` for background loops that should back off rather than stop).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from quick_queue.kv.api import (
    Database,
    KeyValue,
    ReadView,
    TimeSource,
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
    ConfigurationError,
    ForeignDatabase,
    KVError,
    QuickQueueError,
    StorageError,
    is_retryable,
    maybe_committed,
)
from quick_queue.kv.sqlite_engine import SQLiteDatabase

__all__ = [
    "ClientLibraryMissing",
    "ConfigurationError",
    "Database",
    "ForeignDatabase",
    "KVError",
    "KeyValue",
    "QuickQueueError",
    "ReadView",
    "SQLiteDatabase",
    "StorageError",
    "TimeSource",
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


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"bad database URL {url!r}: {why}. Accepted forms: {ACCEPTED_FORMS}"
    )


def open(  # noqa: A001 - the documented name, like fdb.open
    url: str,
    *,
    read_only: bool = False,
    adopt: bool = False,
    clock: TimeSource | None = None,
) -> Database:
    """Open the database ``url`` names (see the module docstring for the forms).

    ``read_only=True`` opens an existing store without writing anything (for inspecting; a
    missing file is an error, and so is a commit that writes). An existing SQLite database that
    is not a quick_queue store is refused (``ForeignDatabase``) unless ``adopt=True``.
    ``clock`` (anything with ``now()``) becomes the store's time (``Database.store_time()``)
    instead of the engine's own, for tests."""
    scheme, rest, params = _split(url)
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
        return SQLiteDatabase(
            path, synchronous=synchronous, read_only=read_only, adopt=adopt, clock=clock
        )
    if scheme == "memory":
        if rest.strip("/") or params:
            raise _bad(url, "memory:// takes no path or options")
        if read_only:
            raise _bad(url, "memory:// starts empty, so it cannot be opened read-only")
        return SQLiteDatabase("", ephemeral=True, synchronous="OFF", clock=clock)
    if scheme == "fdb":
        if params:
            raise _bad(url, f"unknown option(s) {', '.join(sorted(params))}")
        if rest and not rest.startswith("/"):
            raise _bad(url, "the cluster file must be an absolute path: fdb:///path/fdb.cluster")
        cluster_file = rest or None
        from quick_queue.kv.fdb import open_fdb

        return open_fdb(cluster_file, read_only=read_only, clock=clock)
    raise _bad(url, f"unknown scheme {scheme!r}")


_SCHEMES = ("sqlite", "memory", "fdb")


def _split(url: str) -> tuple[str, str, dict[str, str]]:
    """``(scheme, rest, options)`` of ``scheme://rest?options``."""
    if not isinstance(url, str):
        raise _bad(str(url), f"a URL is a string, not {type(url).__name__}")
    scheme, colon, after = url.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme.isalnum():
        raise _bad(url, "no scheme")
    if not after.startswith("//"):
        if scheme == "sqlite":
            path = after.lstrip("/")
            raise _bad(
                url,
                f"'sqlite:' is followed by three slashes and the path: sqlite:///{path} for "
                f"{path} relative to the current folder, sqlite:////{path} for /{path}",
            )
        if scheme in _SCHEMES:
            raise _bad(url, f"write '{scheme}://' (two slashes after the colon)")
        raise _bad(url, f"unknown scheme {scheme!r}")
    rest, _, query = after[2:].partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return scheme, rest, params
