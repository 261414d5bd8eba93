"""The pointer index: one pointer per zone with work, read by scanners.

Three keys per zone (``keys.Layout``): the *marker*, the *record* and the *due entry*.

The marker holds the zone's **promise**: the latest time at which the zone is guaranteed to be
looked at (``ASAP`` while it has ready work, the next scheduled time, or ``EMPTY``). Producers
read the marker with a regular read and touch the pointer record only when the new job is due
before the promise. Consumers write the marker only when the promise gets *later* or changes
kind (zone drained, parked until a scheduled time). So:

* producers never conflict with each other, nor with consumers working a busy zone;
* a consumer that parks a zone and a producer adding to it always conflict, in either commit
  order (the producer read the marker the consumer writes; the consumer read the zone range the
  producer writes), so a job can never sit in a zone whose pointer promises a later visit;
* collection clears the marker, so the same argument keeps every non-empty zone pointed to.

This is stronger than reading only the marker's existence (DESIGN.md §4, transaction 1): with
a snapshot read of the record, a park committed between the producer's read and its commit would
strand the new job until the parked time.
"""

from __future__ import annotations

import struct

from quick_queue.keys import Layout, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import PointerRecord

ASAP = 0
EMPTY = 1 << 62  # no work: the pointer waits for collection


def encode_promise(promise: int) -> bytes:
    return struct.pack(">q", promise)


def decode_promise(raw: bytes) -> int:
    return int(struct.unpack(">q", raw)[0])


def read_pointer(tr: ReadView, layout: Layout, tenant: str) -> PointerRecord | None:
    raw = tr.get(layout.pointer(tenant))
    return PointerRecord.decode(raw) if raw is not None else None


def write_pointer(
    tr: Transaction, layout: Layout, tenant: str, old: PointerRecord | None, new: PointerRecord
) -> None:
    if old is not None and old.vesting != new.vesting:
        tr.clear(layout.due(old.vesting, tenant))
    if old is None or old.vesting != new.vesting:
        tr.set(layout.due(new.vesting, tenant), b"")
    tr.set(layout.pointer(tenant), new.encode())


#: The ``marker`` argument of a caller that has not read the marker (told by identity, never
#: stored): the function reads it itself.
UNREAD: bytes = b"\x00unread"


def touch_pointer(
    tr: Transaction, layout: Layout, tenant: str, due: int, now: int, slack: int,
    marker: bytes | None = UNREAD,
) -> bytes:
    """Make sure the zone will be looked at by ``due`` (enqueue, retry, release, undead).
    ``marker`` is the marker's value when the caller already read it (a regular read) in
    this transaction, to save a read. Returns the marker's value afterwards."""
    marker_key = layout.marker(tenant)
    raw = tr.get(marker_key) if marker is UNREAD else marker
    promise = max(due, now) if due > now else ASAP
    if raw is None:
        written = encode_promise(promise)
        tr.set(marker_key, written)
        write_pointer(tr, layout, tenant, None, PointerRecord(vesting=due, last_active=now))
        return written
    current = decode_promise(raw)
    if current == ASAP or due >= current - slack:
        return raw  # the zone is already promised a visit early enough
    pointer = read_pointer(tr, layout, tenant)
    written = encode_promise(promise)
    tr.set(marker_key, written)
    if pointer is None:  # a marker without a record cannot happen; repair rather than fail
        write_pointer(tr, layout, tenant, None, PointerRecord(vesting=due, last_active=now))
    elif not pointer.leased(now) and pointer.vesting > due:
        # A leased pointer is left alone: its holder reads the marker when it releases the zone
        # and so re-vests it for this job (or conflicts with us and looks again).
        write_pointer(
            tr, layout, tenant, pointer,
            PointerRecord(due, None, 0, pointer.last_active),
        )
    return written


def scan_due(
    tr: Transaction, layout: Layout, now: int, peek_max: int
) -> tuple[list[tuple[int, str]], int | None]:
    """Snapshot read of the due pointers (vesting, tenant), and the next vesting after ``now``."""
    keys, next_vesting = scan_due_keys(tr, layout, now, peek_max)
    return [due_entry(layout, key) for key in keys], next_vesting


def scan_due_keys(
    tr: Transaction, layout: Layout, now: int, peek_max: int, next_when_due: bool = True
) -> tuple[list[bytes], int | None]:
    """``scan_due`` with the due entries' keys left undecoded (``due_entry`` decodes one): a
    scanner that draws a few zones of the ``peek_max`` read decodes only those. Decoding all
    300 keys of a default peek cost 0.8 ms of the 1.25 ms of a scan at 1,000 due zones (the
    read itself 0.45 ms), that is about 40 µs per dequeued job when a visit yields 20 jobs.

    With ``next_when_due=False`` the next vesting is read only when no zone is due (None
    otherwise): a scanner that visits the due zones needs it only if the visits lease
    nothing, and then reads it itself (``next_vesting``), which saves a range read a scan."""
    begin, end = layout.due_until(now)
    keys = [key for key, _ in tr.snapshot.get_range(begin, end, limit=peek_max)]
    if keys and not next_when_due:
        return keys, None
    return keys, next_vesting(tr, layout, now)


def due_keys_after(
    tr: Transaction, layout: Layout, after: bytes, now: int, limit: int
) -> list[bytes]:
    """Snapshot read of the keys of up to ``limit`` due entries past the due entry ``after``
    (the next page of ``scan_due_keys``)."""
    end = layout.due_until(now)[1]
    return [key for key, _ in tr.snapshot.get_range(after + b"\x00", end, limit=limit)]


def newest_due_keys(tr: Transaction, layout: Layout, now: int, limit: int) -> list[bytes]:
    """Snapshot read of the keys of the ``limit`` due entries due last (newest first)."""
    begin, end = layout.due_until(now)
    return [key for key, _ in tr.snapshot.get_range(begin, end, limit=limit, reverse=True)]


def next_vesting(tr: Transaction, layout: Layout, now: int) -> int | None:
    """Snapshot read of the first pointer vesting after ``now``."""
    end = layout.due_until(now)[1]
    nxt = tr.snapshot.get_range(end, layout.due_prefix + b"\xff", limit=1)
    return due_entry(layout, nxt[0][0])[0] if nxt else None


def due_entry(layout: Layout, key: bytes) -> tuple[int, str]:
    """(vesting, tenant) of a due entry's key."""
    vesting, tenant = unpack(key, len(layout.due_prefix))
    return int(vesting), str(tenant)


def lease_zone(
    tr: Transaction, layout: Layout, tenant: str, token: str, now: int, zone_lease: int
) -> bool:
    """Take the zone for ``zone_lease`` microseconds if its pointer is still due and unleased.
    Run it once, without the retry loop: a conflict means another consumer won the zone."""
    pointer = read_pointer(tr, layout, tenant)
    if pointer is None or pointer.vesting > now or pointer.leased(now):
        return False
    expiry = now + zone_lease
    write_pointer(
        tr, layout, tenant, pointer, PointerRecord(expiry, token, expiry, pointer.last_active)
    )
    return True


def release_zone(
    tr: Transaction,
    layout: Layout,
    tenant: str,
    pointer: PointerRecord,
    next_due: int | None,
    now: int,
    active: bool,
    min_inactive: int,
    marker: bytes | None = UNREAD,
) -> None:
    """Hand the zone back: vest the pointer at the zone's next due time, or park it for
    collection when the zone is empty. Writes the marker only when the promise changes.
    ``marker``: its value when the caller already read it (a regular read) in this
    transaction, to save a read."""
    last_active = now if active else pointer.last_active
    if next_due is None:
        promise, vesting = EMPTY, max(now, last_active) + min_inactive
    elif next_due <= now:
        promise, vesting = ASAP, now
    else:
        promise, vesting = next_due, next_due
    marker_key = layout.marker(tenant)
    raw = tr.get(marker_key) if marker is UNREAD else marker
    if raw is None or decode_promise(raw) != promise:
        tr.set(marker_key, encode_promise(promise))
    write_pointer(tr, layout, tenant, pointer, PointerRecord(vesting, None, 0, last_active))


def collect_pointer(tr: Transaction, layout: Layout, tenant: str, pointer: PointerRecord) -> None:
    """Remove the pointer of a zone proven empty (by regular reads, in this transaction)."""
    tr.clear(layout.marker(tenant))
    tr.clear(layout.pointer(tenant))
    tr.clear(layout.due(pointer.vesting, tenant))
