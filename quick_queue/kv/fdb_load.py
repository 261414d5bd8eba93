"""Loading the FoundationDB Python binding and selecting its API version, with errors that say
which package to install.

The binding (PyPI ``foundationdb``) passes its own header version to ``libfdb_c``, so it loads
only with a client library at least as new: a binding's major.minor must match the cluster's
client. Install it with quick_queue's ``fdb`` extra and pin it to your server's release:

========== ==================================
server     install
========== ==================================
7.1.x      ``pip install "foundationdb==7.1.*"``
7.3.x      ``pip install "foundationdb==7.3.*"``
8.0.x      ``pip install "foundationdb==8.0.*"``
========== ==================================

(``pip install "quick-queue[fdb]"`` installs the newest binding, which needs the newest client.)
"""

from __future__ import annotations

import threading
from typing import Any

from quick_queue.kv.errors import ClientLibraryMissing

#: The oldest API version the adapter works with: 4-byte versionstamp offsets need 520, and the
#: ``timeout`` option survives ``on_error`` from 610 on (the retry loop relies on it).
MIN_API_VERSION = 610

#: Which binding to install for which server release.
PINS = (
    'pip install "foundationdb==7.1.*" for a 7.1 cluster, "foundationdb==7.3.*" for 7.3, '
    '"foundationdb==8.0.*" for 8.0'
)
SEVEN_X_HINT = 'for a 7.x cluster: pip install "foundationdb==7.3.*"'

_API_LOCK = threading.Lock()


def binding_release(fdb: Any) -> str:
    """The installed binding's release ("7.1.61"), or "" when it does not say."""
    release = getattr(fdb, "__version__", None)
    if release:
        return str(release)
    try:
        from importlib.metadata import version

        return version("foundationdb")
    except Exception:  # noqa: BLE001 - installed without metadata (a source checkout)
        return ""


def binding_api_version(fdb: Any) -> int:
    """The API version the binding was built for (its header version). Bindings from 7.3 on
    say it in ``fdb.LATEST_API_VERSION``; 7.1 does not, so it is read from the release
    number (7.1.61 -> 710); with neither, the library's maximum is used."""
    latest = getattr(fdb, "LATEST_API_VERSION", None)
    if latest is not None:
        return int(latest)
    parts = binding_release(fdb).split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]) * 100 + int(parts[1]) * 10
    return int(fdb.impl._capi.fdb_get_max_api_version())


def missing_library_message(detail: str, release: str) -> str:
    binding = f"foundationdb {release}" if release else "foundationdb"
    return (
        "The FoundationDB client library (libfdb_c) is not installed, so fdb:// databases "
        "cannot be opened. Install the FoundationDB client package matching your cluster from "
        "https://github.com/apple/foundationdb/releases (foundationdb-clients .deb/.rpm on "
        "Linux, the FoundationDB .pkg on macOS), or put libfdb_c on the library path. Its version "
        f"must match the Python binding (installed: {binding}; 8.0 needs an 8.0 client; "
        f"{SEVEN_X_HINT} with a 7.3 client; {PINS}). The embedded engine (sqlite:///path.db) "
        f"needs nothing installed. (The binding said: {detail})"
    )


def choose_api_version(binding_version: int, library_max: int, release: str = "") -> int:
    """The API version to select: the binding's own unless the installed ``libfdb_c`` supports
    less. Since the binding passes its header version to the library, a library older than the
    binding cannot load at all: that raises ``ClientLibraryMissing`` saying which binding to
    install instead."""
    version = min(binding_version, library_max)
    if library_max < binding_version:
        major, minor = divmod(library_max // 10, 10)
        shown = f" {release}" if release else ""
        install = f'pip install "foundationdb=={major}.{minor}.*"'
        also = "" if install in SEVEN_X_HINT else f"; {SEVEN_X_HINT}"
        raise ClientLibraryMissing(
            f"The installed FoundationDB client library (libfdb_c) supports API version "
            f"{library_max} at most, but the Python binding foundationdb{shown} requires a "
            f"library that supports API version {binding_version}. Install the binding that "
            f"matches the library: {install}{also}; or upgrade libfdb_c to match the binding "
            f"({PINS})."
        )
    if version < MIN_API_VERSION:
        raise ClientLibraryMissing(
            f"FoundationDB API version {version} is too old for quick_queue (it needs "
            f"{MIN_API_VERSION} or later): install a newer client library and binding ({PINS})."
        )
    return version


def _import_binding() -> Any:
    try:
        import fdb  # type: ignore[import-untyped,unused-ignore]
    except ImportError as error:
        raise ClientLibraryMissing(
            'The FoundationDB Python binding is not installed: pip install "quick-queue[fdb]", '
            f"pinned to your cluster's release ({PINS}); it also needs the client library "
            "libfdb_c. The embedded engine (sqlite:///path.db) needs nothing installed."
        ) from error
    return fdb


def load_fdb() -> Any:
    """Import ``fdb``, select its API version once per process, return the module."""
    fdb = _import_binding()
    with _API_LOCK:
        if api_version_selected(fdb):
            selected = int(fdb.get_api_version())
            if selected < MIN_API_VERSION:
                raise ClientLibraryMissing(
                    f"this process selected FoundationDB API version {selected}, but quick_queue "
                    f"needs {MIN_API_VERSION} or later (fdb.api_version() can be called once per "
                    "process: select a newer version, or let quick_queue select it)"
                )
            return fdb
        release = binding_release(fdb)
        try:
            import fdb.impl  # type: ignore[import-untyped,unused-ignore,no-redef]
        except Exception as error:  # the binding raises a bare Exception when dlopen fails
            raise ClientLibraryMissing(missing_library_message(str(error), release)) from error
        library_max = int(fdb.impl._capi.fdb_get_max_api_version())
        version = choose_api_version(binding_api_version(fdb), library_max, release)
        try:
            fdb.api_version(version)
        except RuntimeError as error:
            if api_version_selected(fdb):  # selected meanwhile outside our lock: reuse it
                return fdb
            raise ClientLibraryMissing(
                f"cannot select FoundationDB API version {version} with the binding "
                f"foundationdb {release or '(unknown release)'}: {error} ({PINS})"
            ) from error
    return fdb


def api_version_selected(fdb: Any) -> bool:
    check = getattr(fdb, "is_api_version_selected", None)
    if check is not None:
        return bool(check())
    return "_version" in vars(fdb)
