"""A stand-in for the FoundationDB binding's objects (``fdb.impl`` classes, recognised by their
module and name), for testing the adapter's plumbing without a cluster. It stores nothing
durable: the adapter under test only forwards calls and maps futures and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


# -- a stand-in for the binding's objects ----------------------------------------------------------
class FDBError(Exception):
    """Shaped like fdb.impl.FDBError: an int code, a bytes description."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code

    @property
    def description(self) -> bytes:
        return b"stand-in description"


FDBError.__module__ = "fdb.impl"


class _Future:
    def __init__(
        self, result: Any = None, error: BaseException | None = None, ready: bool = True
    ) -> None:
        self._result = result
        self._error = error
        self._ready = ready

    def is_ready(self) -> bool:
        return self._ready

    def wait(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def value(self) -> Any:  # Value / Key futures are read through .value
        return self.wait()


class WatchFuture(_Future):
    """A watch: ready when ``fire()`` is called; ``on_ready`` callbacks run then."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: list[Callable[[Any], None]] = []
        self.ready = False

    def on_ready(self, callback: Callable[[Any], None]) -> None:
        if self.ready:
            callback(self)
        else:
            self.callbacks.append(callback)

    def fire(self, error: BaseException | None = None) -> None:
        self._error = error
        self.ready = True
        for callback in self.callbacks:
            callback(self)


class _KeyValue:
    def __init__(self, key: bytes, value: bytes) -> None:
        self.key = key
        self.value = value


class _Range:
    def __init__(self, items: list[_KeyValue]) -> None:
        self._items = items

    def __iter__(self) -> Any:
        return iter(self._items)


class _Options:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("set_"):
            raise AttributeError(name)

        def setter(*args: Any) -> None:
            if args and isinstance(args[0], int) and args[0] < 0:
                raise FDBError(2006)
            self.calls.append((name, args))

        return setter


class _Reader:
    def __init__(self, store: dict[bytes, bytes], snapshot: bool) -> None:
        self.store = store
        self.is_snapshot = snapshot

    def get(self, key: bytes) -> _Future:
        pending = getattr(self, "read_errors", None)
        if pending:
            return _Future(error=pending.pop(0))
        if key.startswith(b"\xff"):
            return _Future(error=FDBError(2004))
        return _Future(self.store.get(key))

    def get_range(self, begin: bytes, end: bytes, limit: int = 0, reverse: bool = False) -> _Range:
        keys = sorted((k for k in self.store if begin <= k < end), reverse=reverse)
        if limit:
            keys = keys[:limit]
        return _Range([_KeyValue(k, self.store[k]) for k in keys])


def _op(name: str) -> Any:
    def op(self: Transaction, *args: bytes) -> None:
        self.log.append((name, args))

    return op


class Transaction(_Reader):
    def __init__(self, db: Database | None = None) -> None:
        super().__init__({}, False)
        self.db = db
        #: Errors the next reads raise, first one first (then reads succeed).
        self.read_errors: list[FDBError] = []
        self.options = _Options()
        self.snapshot = _Reader(self.store, True)
        self.commit_error: FDBError | None = None
        self.on_error_args: list[Any] = []
        self.resets = 0
        self.log: list[tuple[str, tuple[bytes, ...]]] = []

    clear_range = _op("clear_range")
    add = _op("add")
    max = _op("max")
    min = _op("min")
    set_versionstamped_key = _op("set_versionstamped_key")
    set_versionstamped_value = _op("set_versionstamped_value")
    add_read_conflict_range = _op("add_read_conflict_range")
    add_read_conflict_key = _op("add_read_conflict_key")
    add_write_conflict_range = _op("add_write_conflict_range")
    add_write_conflict_key = _op("add_write_conflict_key")

    def set(self, key: bytes, value: bytes) -> None:
        self.store[key] = value

    def clear(self, key: bytes) -> None:
        self.store.pop(key, None)

    def get_read_version(self) -> _Future:
        return _Future(1234)

    def get_versionstamp(self) -> _Future:
        # Not ready before the commit, as the binding's: waiting on it would block forever.
        return _Future(b"\x00" * 9 + b"\x01", ready=False)

    def watch(self, key: bytes) -> WatchFuture:
        future = WatchFuture()
        assert self.db is not None
        if self.db.failing_watches is not None:  # e.g. a cluster that does not answer
            future.fire(self.db.failing_watches)
            return future
        self.db.watches.append((key, future))
        return future

    def commit(self) -> _Future:
        if self.db is not None and self.commit_error is None:
            touched = {args[0] for _name, args in self.log} | set(self.store)
            for key, future in list(self.db.watches):
                if key in touched:
                    self.db.watches.remove((key, future))
                    future.fire()
        return _Future(error=self.commit_error)

    def on_error(self, error: Any) -> _Future:
        self.on_error_args.append(error)
        code = error if isinstance(error, int) else error.code
        if code in (1020, 1021, 1007):
            return _Future()
        return _Future(error=FDBError(code))

    def reset(self) -> None:
        self.resets += 1
        self.options = _Options()


Transaction.__module__ = "fdb.impl"


class Database:
    def __init__(self) -> None:
        self.created: list[Transaction] = []
        self.watches: list[tuple[bytes, WatchFuture]] = []
        self.failing_watches: FDBError | None = None
        self.options = _Options()

    def create_transaction(self) -> Transaction:
        tr = Transaction(self)
        self.created.append(tr)
        return tr


Database.__module__ = "fdb.impl"
