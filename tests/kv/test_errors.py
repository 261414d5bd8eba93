"""The key-value layer's error tree and its classification of FoundationDB's codes."""

from __future__ import annotations

import pickle

import quick_queue.kv as kv
from quick_queue.kv.errors import ClientLibraryMissing, KVError, QuickQueueError, StorageError


def test_every_kv_error_is_a_quick_queue_error() -> None:
    assert issubclass(KVError, QuickQueueError)
    assert issubclass(StorageError, QuickQueueError)
    assert issubclass(ClientLibraryMissing, QuickQueueError)
    assert kv.QuickQueueError is QuickQueueError
    try:
        raise StorageError(1510, "disk full", path="/x.db")
    except QuickQueueError as caught:  # one root to catch
        assert isinstance(caught, StorageError) and caught.path == "/x.db"


def test_kv_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(StorageError(1510, "disk full", path="/x.db")))
    assert (type(error), error.code, error.path) == (StorageError, 1510, "/x.db")
