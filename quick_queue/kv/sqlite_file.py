"""What the embedded engine checks about its file before it touches it.

Opening a file for writing creates the engine's tables and switches the file to WAL mode; both
change the file for good. So before that, the file is looked at through a read-only connection:
a folder, a file of another application, or (for a read-only open) a missing or empty file is
refused with a message that names the path and says what to do instead.

It also holds how the store's version is read from those tables (``current_version``).
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from quick_queue.kv.errors import (
    CLIENT_INVALID_OPERATION,
    FILE_NOT_FOUND,
    IO_ERROR,
    ForeignDatabase,
    StorageError,
)

#: The tables of a quick_queue store (``sqlite_engine.SCHEMA``).
STORE_TABLES = frozenset({"kv", "qq_meta", "qq_log"})


def current_version(conn: sqlite3.Connection | sqlite3.Cursor) -> int:
    """The database version ``conn`` sees: the newest ``qq_log`` row (pruning always keeps it)."""
    row = conn.execute("SELECT max(version) FROM qq_log").fetchone()
    return int(row[0])


def read_only_uri(path: str, *, immutable: bool = False) -> str:
    """The SQLite URI that opens ``path`` without ever writing to it (``mode=ro``)."""
    uri = "file:" + quote(os.path.abspath(path), safe="/") + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def connect_read_only(
    path: str, *, timeout: float = 5.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection that reads ``path`` and never writes anything.

    Reading a WAL-mode file takes its ``-shm`` index, which SQLite creates beside the file when
    missing; in a folder we may not write (a read-only mount, a backup, another user's folder)
    that fails. Then, if neither ``-wal`` nor ``-shm`` exists, no process has the store open
    for writing (a writer always has both) and none can start there, so the file is read as
    immutable: without the index and without locks."""
    def connect(uri: str) -> sqlite3.Connection:
        return sqlite3.connect(
            uri, uri=True, timeout=timeout, isolation_level=None,
            check_same_thread=check_same_thread, cached_statements=64,
        )

    conn = connect(read_only_uri(path))
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        if "unable to open" not in str(error) or any(
            os.path.exists(path + suffix) for suffix in ("-wal", "-shm")
        ):
            raise
    return connect(read_only_uri(path, immutable=True))


def _tables(path: str) -> set[str]:
    try:
        conn = connect_read_only(path)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as error:
        raise StorageError(
            FILE_NOT_FOUND, f"{path} cannot be opened for reading: {error}", path=path
        ) from error
    except sqlite3.DatabaseError as error:
        raise StorageError(
            IO_ERROR,
            f"{path} is not a quick_queue database: not a SQLite database at all, or corrupt "
            f"({error}). Give the path of a quick_queue database, or of a new file to create",
            path=path,
        ) from error
    return {str(row[0]) for row in rows}


def check_file(path: str, *, read_only: bool, adopt: bool) -> None:
    """Refuse what must not be opened (see the module docstring); return for a quick_queue
    store, a new or empty file (unless ``read_only``), or a foreign one when ``adopt``."""
    if os.path.isdir(path):
        raise StorageError(
            FILE_NOT_FOUND,
            f"{path} is a folder, not a database file: name a file inside it, for example "
            f"sqlite:///{os.path.join(path, 'queue.db')}",
            path=path,
        )
    exists = os.path.exists(path)
    if read_only and not exists:
        raise StorageError(
            FILE_NOT_FOUND,
            f"{path} does not exist (it was opened read-only, so it is not created): check the "
            "path, or run a producer or worker on it first",
            path=path,
        )
    if not exists or os.path.getsize(path) == 0:
        if read_only:
            raise StorageError(
                FILE_NOT_FOUND, f"{path} is empty: no quick_queue store in it yet", path=path
            )
        return
    tables = _tables(path)
    if STORE_TABLES <= tables:
        return
    if not tables and not read_only:
        return  # a SQLite file with nothing in it: the store is created there
    if read_only:
        raise ForeignDatabase(
            CLIENT_INVALID_OPERATION,
            f"{path} is not a quick_queue store (its tables: {_names(tables)})",
            path=path,
        )
    if adopt:
        return
    raise ForeignDatabase(
        CLIENT_INVALID_OPERATION,
        f"{path} is a SQLite database of another application (its tables: {_names(tables)}), "
        "not a quick_queue store. Opening it would add quick_queue's tables and switch it to "
        "WAL mode, so it was left untouched: use another file, or pass adopt=True to "
        "quick_queue.kv.open() to keep the queue in this file on purpose",
        path=path,
    )


def _names(tables: set[str]) -> str:
    shown = sorted(tables)
    more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
    return (", ".join(shown[:8]) or "none") + more
