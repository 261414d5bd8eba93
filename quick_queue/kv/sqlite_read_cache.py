"""The embedded engine's read cache: the first point read of a transaction served from memory
instead of a SQLite read snapshot, when the engine can prove the value is the latest committed.

Why: a transaction's first read opens a snapshot on a pooled connection (``BEGIN``, one
``SELECT``, ``ROLLBACK``). After any commit, that connection's page cache is stale and SQLite
drops it, so the read walks its pages again: measured (issue 10, 1 kB pages, a commit between
reads) 30-43 µs of CPU against 8 µs without commits in between. An enqueue reads one key (its
zone's marker, ``core/pointers.touch_pointer``) that rarely changes: that read is what this
cache serves. Measured with it (issue 10, against the same code with serving turned off,
interleaved): enqueue one per transaction 398k -> 350k instructions per enqueue (callgrind, 500
enqueues), CPU 253-321 -> 203-270 µs; 8 producer threads 188-210 -> 149-247 µs of CPU per
enqueue, 3.7-5.1k -> 4.2-6.3k/s; a kv transaction's point read before a write costs ~0 instead
of ~40 µs.

The invariant: ``ReadCache.values`` holds, for each key it has, the value committed at the
version ``SQLiteDatabase._seen`` (the writer's view: its own commits and every other
connection's commit it has mirrored into the conflict history). It is kept by the thread that
holds ``ReadCache.lock``, which the group-commit leader holds for a whole batch:

* a batch that mirrors other connections' commits drops the keys they wrote (all of them for a
  range clear or a gap in the log); a batch that commits updates the keys it wrote that the
  cache holds (drops those of atomic operations and versionstamps), before any of its commits
  is acknowledged; a batch that fails empties the cache (its writes may or may not be in);
* a transaction whose only read was one point read, at snapshot version V, adds its key at its
  commit when V is still ``_seen``.

A read is served only under the lock, and only while ``PRAGMA data_version`` on the writer's
connection shows that no other connection committed since the writer last mirrored the log
(SQLite changes it for other connections' commits only, and the writer's page cache stays
warm after its own commits: measured ~3 µs). Then the cached value is the latest committed
value at that moment, and ``_seen`` is the transaction's read version: the read is as fresh as
a snapshot (a commit acknowledged anywhere before it is seen), and the commit checks conflicts
from that version as for any read. When the lock is taken (a batch in progress), the key is not
cached, or another connection committed, the read takes a snapshot as before.

``get_before_write`` (an enqueue's read of its zone's marker) skips that check: its
transaction writes, so its commit proves the read instead. The read version is ``_seen`` as
always; the commit mirrors every other connection's commit since, and a write of the key among
them is a conflict (1020; the retry reads the new value). A value proven unchanged up to the
commit version was also the latest when it was read. Measured (issue 10, callgrind, enqueue
one per transaction): 336k -> 320k instructions per enqueue, and four fcntl calls and a
statement fewer. Such a transaction that writes nothing after all reads the keys again at its
commit (``SQLiteTransaction.commit``), as a snapshot would have.

A transaction that was served from the cache and later needs a snapshot (another read, a range,
its read version) opens it and reads the served keys again there: unchanged, the snapshot's
version becomes its read version (every read then agrees with that one snapshot); changed, the
transaction could only fail at commit, and must not see two versions: it gets ``not_committed``
(1020, retryable) at once (``SQLiteTransaction._rebase``).

Only regular point reads are served: a snapshot read that a later snapshot contradicts would
fail its transaction, where FoundationDB's would go on (snapshot reads never conflict). And a key
whose served read was followed by a snapshot is not cached again (``ReadCache.bound``): keys
enter the cache from transactions that read nothing else, but a consumer may read the same key
first and then ranges.

Bounded: at most ``ENTRIES`` keys of values up to ``VALUE_BYTES`` (about 1 MB).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from quick_queue.kv.atomic import place_versionstamp
from quick_queue.kv.conflicts import WriteSet
from quick_queue.kv.sqlite_commit import Request

ENTRIES = 1024
VALUE_BYTES = 1024


class ReadCache:
    __slots__ = ("bound", "lock", "values")

    def __init__(self) -> None:
        self.values: dict[bytes, bytes | None] = {}
        # Keys whose served read was followed by a snapshot in the same transaction: a
        # consumer's first read (a zone's pointer record) before its range reads. Serving them
        # saves nothing (the snapshot reads them again) and costs the check of the writer; and
        # a commit to such a key between the two reads fails the transaction at its next read
        # instead of at its commit. So they are not cached again.
        self.bound: set[bytes] = set()
        # Held by the group-commit leader for a batch, and by a read served from the cache.
        self.lock = threading.Lock()

    def remember(self, key: bytes, value: bytes | None) -> None:
        """Add a value read at the cache's version (the caller holds the lock and checked it)."""
        if (value is not None and len(value) > VALUE_BYTES) or key in self.bound:
            return
        values = self.values
        if key not in values and len(values) >= ENTRIES:
            del values[next(iter(values))]  # the oldest entry
        values[key] = value

    def snapshot_bound(self, keys: Iterable[bytes]) -> None:
        """These keys were served to a transaction that then took a snapshot (see ``bound``)."""
        if len(self.bound) >= ENTRIES:
            self.bound.clear()
        for key in keys:
            self.bound.add(key)
            self.values.pop(key, None)

    def forget_foreign(self, writes: WriteSet) -> None:
        """Another connection's commit wrote ``writes``: drop what it may have changed."""
        values = self.values
        if not values:
            return
        if writes.ranges:
            values.clear()
            return
        # The keys both hold, found in C (dict keys & set): measured (issue 10, callgrind), a
        # second handle's commit after another's batch of 2,000 keys 4.48M -> 2.99M
        # instructions, after a batch of 100 keys 539k -> 482k, against a pop per written key.
        for key in values.keys() & writes.points:
            del values[key]

    def apply_commit(self, accepted: Iterable[Request]) -> None:
        """This process committed ``accepted`` (in order, their versionstamps set): keys the
        cache holds take their new value."""
        values = self.values
        if not values:
            return
        for request in accepted:
            if request.cleared:
                values.clear()
                return
            writes = request.writes
            # only the keys both hold (found in C): an enqueue_many of 1,000 writes 2,000 keys,
            # of which the cache holds a few (issue 10: 0.5 ms a batch looking at each)
            for key in values.keys() & writes.keys():
                kind, data = writes[key]
                if kind == "s" and len(data) <= VALUE_BYTES:  # type: ignore[arg-type]
                    values[key] = data  # type: ignore[assignment]
                elif kind == "c":
                    values[key] = None
                else:  # an atomic result or a versionstamped value: not worked out here
                    del values[key]
            if request.stamped:
                stamp = request.stamp
                assert stamp is not None
                for template, _value in request.stamped:
                    values.pop(place_versionstamp(template, stamp), None)
