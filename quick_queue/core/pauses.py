"""Pauses of a tenant or a topic (issue 13): one empty key each, ``flow/tenant/{tenant}`` or
``flow/topic/{topic}``.

A paused tenant's zone is *parked*: its pointer is moved to ``PARKED`` (far in the future), so
no scanner sees it due, and its marker promises ``ASAP`` so producers adding jobs to it leave
the pointer alone (the jobs simply wait). Parking reads the pause key with a regular read, and
resuming clears that key and re-vests a parked pointer in one transaction, so a park by a
worker whose view of the pauses is stale and a resume always conflict: a resumed zone is never
left parked. Jobs of a paused zone stay where they are (ready, scheduled, or leased by an
attempt that finishes normally): nothing is spent or lost.
"""

from __future__ import annotations

from quick_queue.core.pointers import (
    ASAP,
    decode_promise,
    encode_promise,
    read_pointer,
    write_pointer,
)
from quick_queue.keys import Layout, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import PointerRecord

KINDS = ("tenant", "topic")
PARKED = (1 << 62) - 1  # the vesting of a paused tenant's pointer: never due
LIST_LIMIT = 10_000


def set_pause(tr: Transaction, layout: Layout, kind: str, name: str) -> bool:
    """Pause; False when it already was."""
    key = layout.pause(kind, name)
    if tr.get(key) is not None:
        return False
    tr.set(key, b"")
    return True


def clear_pause(tr: Transaction, layout: Layout, kind: str, name: str, now: int) -> bool:
    """Resume; a tenant's parked zone is due again at once. False when it was not paused."""
    key = layout.pause(kind, name)
    if tr.get(key) is None:
        return False
    tr.clear(key)
    if kind == "tenant":
        pointer = read_pointer(tr, layout, name)
        if pointer is not None and pointer.vesting == PARKED:
            write_pointer(tr, layout, name, pointer,
                          PointerRecord(now, None, 0, pointer.last_active))
    return True


def park_zone(tr: Transaction, layout: Layout, tenant: str, now: int) -> bool:
    """Park the due, unleased zone of a paused tenant; False if the tenant is not paused (any
    more) or the zone is not due or is held by a consumer (it is looked at again later)."""
    if tr.get(layout.pause("tenant", tenant)) is None:
        return False
    pointer = read_pointer(tr, layout, tenant)
    if pointer is None or pointer.vesting > now or pointer.leased(now):
        return False
    marker = layout.marker(tenant)
    raw = tr.get(marker)
    if raw is None or decode_promise(raw) != ASAP:
        tr.set(marker, encode_promise(ASAP))
    write_pointer(tr, layout, tenant, pointer,
                  PointerRecord(PARKED, None, 0, pointer.last_active))
    return True


def list_pauses(tr: ReadView, layout: Layout) -> list[tuple[str, str]]:
    """(kind, name) of every pause."""
    prefix = layout.flow_prefix
    out = []
    for kind in KINDS:
        begin = layout.pause(kind, "")
        end = begin[:-2] + b"\xff"
        for key, _ in tr.get_range(begin, end, limit=LIST_LIMIT):
            out.append((kind, str(unpack(key, len(prefix))[1])))
    return out
