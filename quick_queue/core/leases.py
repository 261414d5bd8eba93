"""Extending leases (DESIGN.md §4, transaction 5) without rewriting job records (issue 14).

Why and how the records are left alone, and why the invariants hold: ``core.records``,
"extended leases". The lease keeper extends every in-flight job's lease in batches; each
lease's keys are read in one round of parallel reads (two when a holder is behind its own
extension), and only small keys are written: the lease's index entry moves, its extension
record is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from quick_queue.core.records import (
    EXTENDED,
    ByteBudget,
    encode_extension,
    entry_holds,
    extended_expiry,
    extension_key,
)
from quick_queue.errors import UnreadableRecord
from quick_queue.keys import Layout
from quick_queue.kv.api import Transaction
from quick_queue.models import JobRecord


def held_record(job_id: str, raw: bytes | None, token: str) -> JobRecord | None:
    """The record stored as ``raw`` if it is leased with ``token`` (``UnreadableRecord`` if it
    cannot be decoded)."""
    if raw is None:
        return None
    record = JobRecord.decode(job_id, raw)
    if record.state != "l" or record.token != token:
        return None
    return record


Lease = tuple[str, str, str] | tuple[str, str, str, int]


def extend_leases(
    tr: Transaction, layout: Layout, leases: Sequence[Lease], now: int, item_lease: int, *,
    budget: int | None = None,
) -> list[bool]:
    """Push the expiry of each lease to ``now + item_lease``; False where the lease is lost.
    A lease is (tenant, job_id, token, expiry the holder knows); without the expiry, the
    record is read to find it. Writes small keys only, never the record (see the extended
    leases in ``core.records``): the lease's index entry moves, its extension record is
    written. Reads in one round (two when a holder's known expiry is behind its extension
    record's). With ``budget`` (bytes), as ``settle_many``: the list returned may be shorter
    than ``leases``."""
    target = now + item_lease
    found = _find_leases(tr, layout, leases)
    bytes_left = ByteBudget(tr, budget)
    kept: list[bool] = []
    for lease, current in zip(leases, found, strict=True):
        if kept and bytes_left.spent():
            break
        kept.append(current is not None)
        if current is None or target <= current:
            continue  # lost; or already long enough (an extension never shortens a lease)
        tenant, job_id, token = lease[:3]
        zone = layout.zone(tenant)
        # three keys written (two of them cleared or set in the index), with conflict ranges
        bytes_left.add(6 * len(zone.leased_key(target, job_id)) + 2 * len(token) + 64)
        tr.clear(zone.leased_key(current, job_id))
        tr.set(zone.leased_key(target, job_id), token.encode() + EXTENDED)
        tr.set(extension_key(zone, job_id), encode_extension(target, token))
    return kept


def _find_leases(
    tr: Transaction, layout: Layout, leases: Sequence[Lease]
) -> list[int | None]:
    """Each lease's current expiry (where its index entry is), None where it is lost. Every
    read is a regular one: whatever ends a lease writes what was read here (its entry, its
    extension record, its record), so an extension and an end of the lease conflict."""
    full = [(lease[0], lease[1], lease[2], lease[3] if len(lease) > 3 else 0)
            for lease in leases]
    keys = []
    for tenant, job_id, _, known in full:
        zone = layout.zone(tenant)
        keys += [extension_key(zone, job_id),
                 zone.leased_key(known, job_id) if known else zone.item(job_id)]
    values = tr.get_many(keys)
    found: list[int | None] = []
    recheck: dict[int, int] = {}  # lease index -> its extension's expiry, entry not read yet
    for n, (_, job_id, token, known) in enumerate(full):
        extended, second = extended_expiry(values[2 * n], token), values[2 * n + 1]
        if not known:  # ``second`` is the record: where a never-extended lease's entry is
            try:
                record = held_record(job_id, second, token)
            except UnreadableRecord:
                record = None  # lost: whoever settles or dequeues it next buries it
            if record is not None and extended is None:
                found.append(record.at)
                continue
        elif extended is None or extended == known:  # ``second`` is the entry at ``known``
            found.append(known if entry_holds(second, token) else None)
            continue
        found.append(None)
        if extended is not None:
            # the holder's known expiry is behind (an extension whose commit it never heard
            # of): the entry is at the extension's time; it is read there before trusted
            recheck[n] = extended
    if recheck:
        entries = [layout.zone(full[n][0]).leased_key(at, full[n][1])
                   for n, at in recheck.items()]
        for (n, at), value in zip(recheck.items(), tr.get_many(entries), strict=True):
            if entry_holds(value, full[n][2]):
                found[n] = at
    return found
