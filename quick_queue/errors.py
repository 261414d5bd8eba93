"""Exceptions quick_queue raises.

::

    Exception
     ├── ValueError
     │    └── PayloadError          a payload that fails its topic's model or is not JSON
     ├── QuickQueueError            base of the queue's own errors
     │    └── ConfigurationError    a setting or URL that cannot work (also a ValueError)
     └── KVError                    the storage layer, with FoundationDB's .code
          ├── StorageError          the embedded engine's file is unusable (.path)
          └── ClientLibraryMissing  fdb: URL without the FoundationDB client library
"""

from __future__ import annotations

from quick_queue.kv.errors import ClientLibraryMissing, KVError, StorageError


class QuickQueueError(Exception):
    """Base of quick_queue's own errors (storage errors are ``KVError``)."""


class ConfigurationError(QuickQueueError, ValueError):
    """A setting or database URL that cannot work."""


class PayloadError(ValueError):
    """A payload that does not validate against its topic's model, or is not JSON."""


__all__ = [
    "ClientLibraryMissing",
    "ConfigurationError",
    "KVError",
    "PayloadError",
    "QuickQueueError",
    "StorageError",
]
