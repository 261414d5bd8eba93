"""Dequeue and release (DESIGN.md §4, transaction 4): one transaction per zone visit, run while
the consumer holds the zone lease."""

from __future__ import annotations

from collections.abc import Callable

from quick_queue.core.pointers import UNREAD, collect_pointer, release_zone
from quick_queue.core.records import (
    Stats,
    bury,
    bury_unreadable,
    clear_lease,
    extension_key,
    flush_stats,
    with_extension,
)
from quick_queue.errors import UnreadableRecord
from quick_queue.keys import Layout, Zone, pack_int, pack_str, unpack
from quick_queue.kv.api import ReadView, Transaction, range_read_conflict
from quick_queue.models import JobRecord, LeasedJob, PointerRecord

# topic -> the max_retries of the handler this worker runs it with (None: no opinion)
RetriesOf = Callable[[str], int | None]
#: The value of a scheduled entry whose job keeps its place in line when it is promoted: a job
#: handed back to wait for a cap's slot or a rate's turn (``core.caps.hand_back``, issue 13).
#: Every other scheduled entry is empty, and its job goes to the back of the line (a retry, a
#: snooze, a job enqueued for later).
KEEP_PLACE = b"k"
_INT_ZERO = 0x14  # the tuple layer's type code of the integer 0 (quick_queue.keys)


class ZoneLeaseLost(Exception):
    """The zone lease this consumer held was taken over; nothing was dequeued."""


class ZoneNotDue(ZoneLeaseLost):
    """The zone is no longer due (another consumer took or moved it); nothing was dequeued."""


def _index_entries(
    tr: Transaction, prefix: bytes, end: bytes, limit: int
) -> list[tuple[int, str, bytes]]:
    """(time, job id, entry value) of the index entries from ``prefix`` to ``end``, which
    are cleared here: every entry read is moved on or dropped by the caller. One range clear,
    from the first entry to just past the last, clears exactly them (the reasoning of
    ``_lease_ready``'s: the first keys of the range, read by a regular read)."""
    rows = tr.get_range(prefix, end, limit=limit)
    if not rows:
        return []
    tr.clear_range(rows[0][0], rows[-1][0] + b"\x00")
    offset = len(prefix)
    out = []
    for key, value in rows:
        at, job_id = unpack(key, offset)
        out.append((int(at), str(job_id), value))
    return out


def _readable(
    tr: Transaction, zone: Zone, job_id: str, now: int, stats: Stats, raw: bytes | None = None,
    *, read: bool = True,
) -> JobRecord | None:
    """The record of ``job_id`` (read now, or the ``raw`` bytes already read); a record that
    cannot be decoded is buried as an "unreadable" dead letter and None returned, so one bad
    record never stops the zone."""
    if read:
        raw = tr.get(zone.item(job_id))
    if raw is None:
        return None
    try:
        return JobRecord.decode(job_id, raw)
    except UnreadableRecord as error:
        bury_unreadable(tr, zone, job_id, raw, now, error.reason, stats)
        return None


#: The first keys of a zone's scheduled and leased indexes (None: empty), read by
#: ``promote_due`` when neither held anything due, for ``next_due``.
Heads = tuple[bytes | None, bytes | None]


def _first_key(reader: ReadView, prefix: bytes) -> bytes | None:
    """The first key of the index at ``prefix`` (None: empty), read through ``reader``."""
    rows = reader.get_range(prefix, prefix + b"\xff", limit=1)
    return rows[0][0] if rows else None


def _head(
    tr: Transaction, prefix: bytes, now: int, head: bytes | None = UNREAD
) -> tuple[bytes | None, bool]:
    """(the first key of the index at ``prefix``, whether its time is past ``now``): one
    snapshot read (``head``: that read's key, already made). When nothing is due, the read
    conflict that the regular read of the due entries (``zone.until``) would have added, over
    the range it would have found empty, is added explicitly, so the transaction conflicts
    exactly as before."""
    if head is UNREAD:
        head = _first_key(tr.snapshot, prefix)
    end = prefix + pack_int(now + 1)  # (zone.until's end)
    if head is not None and head < end:
        return head, False  # something is due: the caller reads the due entries
    tr.add_read_conflict_range(prefix, end)
    return head, True


def promote_due(
    tr: Transaction, zone: Zone, now: int, promote_max: int, stats: dict[tuple[str, str], int],
    max_retries_of: RetriesOf | None = None, read: Heads | None = None,
) -> Heads | None:
    """Move due scheduled jobs and expired leases to ready. An expired lease spent an attempt
    (the run was counted when it was leased), so a job whose process keeps dying ends in the
    dead letters after max_retries instead of looping forever. The records of each index are
    read together (one round of reads on FoundationDB, not one per job).

    Each index's head is read first (a snapshot read, ``_head``); the due entries are read
    only when the head is due. Returns both heads when neither index had anything due (the
    common case), so ``next_due`` needs no read of its own: a visit that empties its zone
    made 4 range reads of these indexes, now 2 (issue 10; figures in ``dequeue``). None when
    something was promoted (the heads moved: ``next_due`` reads them). ``read``: the two
    heads read already (snapshot reads, ``_visit_reads``)."""
    first, second = read if read is not None else (UNREAD, UNREAD)
    scheduled_head, idle = _head(tr, zone.scheduled, now, first)
    if not idle:
        _promote_scheduled(tr, zone, now, promote_max, stats)
    leased_head, leased_idle = _head(tr, zone.leased, now, second)
    if not leased_idle:
        _promote_expired(tr, zone, now, promote_max, stats, max_retries_of)
    return (scheduled_head, leased_head) if idle and leased_idle else None


def _promote_scheduled(
    tr: Transaction, zone: Zone, now: int, promote_max: int, stats: Stats
) -> None:
    begin, end = zone.until(zone.scheduled, now)
    entries = _index_entries(tr, begin, end, promote_max)
    raws = tr.get_many([zone.item(job_id) for _, job_id, _ in entries]) if entries else []
    for (at, job_id, value), raw in zip(entries, raws, strict=True):
        record = _readable(tr, zone, job_id, now, stats, raw, read=False)
        if record is None or record.state != "s" or record.at != at:
            continue  # a dangling index entry: the record moved on; drop the entry
        if value != KEEP_PLACE:
            record.seq = at  # the back of the line, as of its time
        record.state, record.at = "r", record.seq
        tr.set(zone.ready_key(record.priority, record.seq, job_id), b"")
        tr.set(zone.item(job_id), record.encode())


def _promote_expired(
    tr: Transaction, zone: Zone, now: int, promote_max: int, stats: Stats,
    max_retries_of: RetriesOf | None,
) -> None:
    begin, end = zone.until(zone.leased, now)
    entries = _index_entries(tr, begin, end, promote_max)
    # each record with its extension record: an extended lease's entry is at the extension's
    # expiry, not the record's (core.records, "extended leases")
    keys = [key for _, job_id, _ in entries for key in (zone.item(job_id),
                                                         extension_key(zone, job_id))]
    raws = tr.get_many(keys) if keys else []
    for n, (at, job_id, _) in enumerate(entries):
        record = _readable(tr, zone, job_id, now, stats, raws[2 * n], read=False)
        if record is None or record.state != "l":
            continue
        if with_extension(record, raws[2 * n + 1]).at != at:
            continue  # not the lease's current entry: dangling, dropped
        clear_lease(tr, zone, record, raws[2 * n + 1])  # and its extension record
        record.token = None
        record.error = f"lease expired during attempt {record.attempt} (worker died or stalled)"
        stats[(record.topic, "lease_expired")] = stats.get((record.topic, "lease_expired"), 0) + 1
        limit = record.resolve_max_retries(max_retries_of(record.topic) if max_retries_of else None)
        if record.attempt > limit:
            bury(tr, zone, record, now, "lease_expired",
                 f"lease expired on each of {record.attempt} attempts", stats)
            continue
        record.state, record.at = "r", record.seq
        tr.set(zone.ready_key(record.priority, record.seq, job_id), b"")
        tr.set(zone.item(job_id), record.encode())


def next_due(tr: Transaction, zone: Zone, heads: Heads | None = None) -> int | None:
    """When the zone next needs a visit (ready work must already be known to be absent).
    ``heads``: the indexes' first keys as ``promote_due`` read them in this transaction (no
    write to either index since), instead of reading them again."""
    # The scheduled head is a regular read: an enqueue of an earlier job must conflict with a
    # release that vests the pointer later. The leased head is a snapshot read: leases only
    # disappear or move later behind our back (completions, extensions), which can only make
    # the vesting early, never late, and completions would otherwise conflict with every visit.
    if heads is None:
        heads = (_first_key(tr, zone.scheduled), _first_key(tr.snapshot, zone.leased))
    else:
        # the conflict of the scheduled head's regular limit-1 read: up to just past the
        # key it returned, or the whole index when empty
        head = heads[0]
        tr.add_read_conflict_range(
            zone.scheduled, head + b"\x00" if head is not None else zone.scheduled + b"\xff"
        )
    times = [
        int(unpack(head, len(prefix))[0])
        for prefix, head in ((zone.scheduled, heads[0]), (zone.leased, heads[1]))
        if head is not None
    ]
    return min(times) if times else None


def _packed_ids(entries: list[tuple[bytes, bytes]], offset: int) -> list[tuple[bytes, str]]:
    """(the packed job id, the job id) of each ready entry's key
    (``{ready}{priority}{seq}{job_id}``, the ready prefix ``offset`` bytes long): the id's
    bytes are cut out of the key and reused for the job's item and leased keys, instead of
    unpacking the key and packing the id twice (issue 10: 3 of a lease's ~40 µs of Python).
    The two integers are stepped over by their type codes' lengths (``_INT_SKIP``; an
    unexpected code steps past the key's end, an IndexError), in one loop for the visit's
    entries. A key that is not plain (an id holding a NUL, an unexpected element) goes
    through ``unpack``, which reads it, or refuses it, as before."""
    skip, out = _INT_SKIP, []
    for key, _ in entries:
        try:
            pos = offset + skip[key[offset]]
            pos += skip[key[pos]]
            raw = key[pos + 1 : -1]
            if key[pos] == 0x02 and key[-1] == 0 and 0 not in raw:  # (int: keys._escape)
                out.append((key[pos:], raw.decode("utf-8")))
                continue
        except (IndexError, UnicodeDecodeError):
            pass  # unpack says what is wrong with it
        job_id = str(unpack(key, offset)[2])
        out.append((pack_str(job_id), job_id))
    return out


#: Bytes an integer of the tuple layer takes, by its type code (codes 0x0C-0x1C: the code and
#: up to 8 bytes of magnitude); any other code steps past every key. Callgrind (issue 10):
#: 5.9k -> 3.9k instructions a ready entry, against a call a key doing checked arithmetic on
#: each code.
_INT_SKIP = tuple(
    1 + abs(code - _INT_ZERO) if 0x0C <= code <= 0x1C else 1 << 30 for code in range(256)
)


def _lease_ready(
    tr: Transaction, zone: Zone, entries: list[tuple[bytes, bytes]], expiry: int, now: int,
    new_token: Callable[[], str], max_retries_of: RetriesOf | None, stats: Stats,
    max_bytes: int | None = None,
) -> tuple[list[LeasedJob], bytes | None, bool]:
    """Lease the jobs of these ready ``entries`` until ``expiry``, each with a fresh token:
    (the jobs leased, the zone's marker, whether ``max_bytes`` left some of the entries
    ready). ``max_bytes``: the most bytes of records the lease may rewrite (at least one
    record is leased); the entries past it are left as they are, ready, and not cleared.

    The marker, which ``release_zone`` reads with a regular read at the end of the visit,
    is read here with the records, in their one statement (issue 10: one statement fewer a
    visit; nothing in the visit writes it before). Its read conflict is the one the release
    adds; in the rare visit that then collects the pointer (every entry read was dangling),
    it is a key whose writers (a producer's first job, another consumer's release) write
    keys the collection read too.

    One pass a job with the lookups hoisted (``_readable`` inlined, the handler's retry
    limit asked once a topic per visit, no list of (id, key) pairs zipped back): measured
    with callgrind over a single-threaded scan of 2,000 jobs (issue 10)."""
    offset = len(zone.ready)
    items_prefix, tenant, decode = zone.items, zone.tenant, JobRecord.decode
    packed = _packed_ids(entries, offset)
    keys = [items_prefix + tail for tail, _ in packed]
    keys.append(zone.marker)
    raws = tr.get_many(keys)
    marker = raws.pop()
    cut = False
    # (summed in C first: a visit of small jobs, the usual one, walks no loop here)
    if max_bytes is not None and sum(map(len, filter(None, raws))) > max_bytes:
        spent = 0
        for n, raw in enumerate(raws):
            spent += len(raw) if raw is not None else 0
            if spent > max_bytes and n:
                del entries[n:], packed[n:], raws[n:]
                cut = True
                break
    leased = zone.leased + pack_int(expiry)
    taken: list[LeasedJob] = []
    writes: list[tuple[bytes, bytes]] = []  # (set together: other keys than any cleared here)
    limits: dict[str, int | None] = {}  # topic -> max_retries_of(topic), asked once a visit
    if entries:
        # Every entry read is cleared, leased or not (a dangling or unreadable one too): they
        # are the first keys of the ready range, read by a regular read in this transaction,
        # so the range from the first to just past the last holds exactly them (a key another
        # transaction adds between them conflicts with that read, one this transaction wrote
        # before the read was read with them), and one range clear does what a clear a key
        # did. Callgrind over the scanner path (issue 10): 153.7k -> 141.0k instructions a job
        # with 1 tenant, 172.9k -> 162.7k with 100 tenants x 20 jobs (the embedded engine's
        # point clears cost more in Python and SQL than one range delete).
        tr.clear_range(entries[0][0], entries[-1][0] + b"\x00")
    for (tail, job_id), raw in zip(packed, raws, strict=True):
        if raw is None:
            continue
        try:
            record = decode(job_id, raw)
        except UnreadableRecord as error:  # buried, so one bad record never stops the zone
            bury_unreadable(tr, zone, job_id, raw, now, error.reason, stats)
            continue
        if record.state != "r":
            continue
        token = new_token()
        value = record.lease(expiry, token)  # (state "l", one more attempt, the token)
        writes += ((leased + tail, token.encode()), (items_prefix + tail, value))
        if max_retries_of is not None and not record.retries_set:
            # in memory only: the stored record keeps "none fixed" for the next worker
            topic = record.topic
            if topic in limits:
                limit = limits[topic]
            else:
                limit = limits[topic] = max_retries_of(topic)
            if limit is not None:
                record.max_retries = limit
        taken.append(LeasedJob(tenant, record))
    tr.set_many(writes)
    return taken, marker, cut


def ready_at_least(reader: ReadView, layout: Layout, tenant: str, many: int) -> bool:
    """Whether the zone of ``tenant`` holds at least ``many`` ready jobs (one range read of at
    most ``many`` keys, through ``reader``: a snapshot read adds no conflict)."""
    zone = layout.zone(tenant)
    return len(reader.get_range(zone.ready, zone.ready + b"\xff", limit=many)) >= many


def _visit_reads(
    tr: Transaction, layout: Layout, tenant: str, zone: Zone, limit: int
) -> tuple[PointerRecord | None, Heads, list[tuple[bytes, bytes]]]:
    """(the zone's pointer, the first keys of its scheduled and leased indexes, the first
    ``limit`` entries of its ready index): a visit's reads, made together by one snapshot
    ``get_ranges`` (one statement on the embedded engine instead of four; in flight together
    on FoundationDB). The pointer's read conflict, a regular read's, is added here; the heads'
    by ``promote_due`` and ``next_due``, the ready entries' by the caller once the zone is
    known to be due (a zone passed over adds no conflict on its index)."""
    key = layout.pointer(tenant)
    rows, scheduled, leased, ready = tr.snapshot.get_ranges([
        (key, key + b"\x00", 1),
        (zone.scheduled, zone.scheduled + b"\xff", 1),
        (zone.leased, zone.leased + b"\xff", 1),
        (zone.ready, zone.ready + b"\xff", limit),
    ])
    tr.add_read_conflict_key(key)
    pointer = PointerRecord.decode(rows[0][1]) if rows else None
    heads = (scheduled[0][0] if scheduled else None, leased[0][0] if leased else None)
    return pointer, heads, ready


def dequeue(
    tr: Transaction,
    layout: Layout,
    tenant: str,
    zone_token: str | None,
    now: int,
    *,
    count: int,
    item_lease: int,
    promote_max: int,
    min_inactive: int,
    new_token: Callable[[], str],
    max_retries_of: RetriesOf | None = None,
    max_bytes: int | None = None,
) -> list[LeasedJob]:
    """Lease up to ``count`` ready jobs of the zone and release the zone lease.

    ``max_bytes``: the most bytes of job records this lease may rewrite (at least one job is
    leased), so that a visit of large jobs stays within a transaction's size (FoundationDB
    refuses one past 10 MB); the jobs left are still ready, and the zone stays due.

    With ``zone_token=None`` the zone is taken in this same transaction instead of by an earlier
    ``lease_zone``: the regular read of the pointer record makes two consumers that visit one
    zone at once conflict, and the loser's commit fails with 1020 (a lost race, not retried).
    That halves the commits per visit (each one an fsync on the embedded engine), which is
    worth more than the work a rare loser throws away; the runtime does it this way. The
    two-step form of DESIGN.md (lease, then dequeue holding the token) stays available.

    ``max_retries_of(topic)`` is the worker's view of a topic's ``max_retries`` (its
    handler's, else its queue's setting): it judges jobs whose producer fixed none, both an
    expired lease here and, on the returned records, the runtime's count of attempts left (the
    stored record keeps "none fixed", so each worker resolves it with its own handler)."""
    zone = layout.zone(tenant)
    limit = count + 1 if count else 1
    pointer, read, ready = _visit_reads(tr, layout, tenant, zone, limit)
    if zone_token is None:
        if pointer is None or pointer.vesting > now or pointer.leased(now):
            raise ZoneNotDue(tenant)
    elif pointer is None or pointer.token != zone_token:
        raise ZoneLeaseLost(tenant)
    stats: Stats = {}
    heads = promote_due(tr, zone, now, promote_max, stats, max_retries_of, read)
    if heads is None:  # something was due: the ready index may have changed since its read
        ready = tr.get_range(zone.ready, zone.ready + b"\xff", limit=limit)
    else:  # the conflict of a regular read of it
        tr.add_read_conflict_range(
            *range_read_conflict(zone.ready, zone.ready + b"\xff", ready, limit)
        )
    # When the zone is next due is read before the lease is written: leasing writes no
    # scheduled entry and clears no leased one, so the heads are the same, with this visit's
    # leases added below; and the reads do not scan the writes the lease adds (the embedded
    # engine looks through a transaction's writes on each range read).
    due: int | None = now if len(ready) > count else next_due(tr, zone, heads)
    if ready:
        taken, marker, cut = _lease_ready(
            tr, zone, ready[:count], now + item_lease, now, new_token, max_retries_of, stats,
            max_bytes,
        )
        if cut:
            due = now  # (ready jobs were left)
    else:
        taken, marker = [], UNREAD  # (release_zone reads it)
    if taken and due != now:  # (the leases of this visit are due at their expiry)
        due = now + item_lease if due is None else min(due, now + item_lease)
    if due is None:
        # Nothing scheduled or leased and no ready work: prove emptiness with a regular read of
        # the records (this read is what makes collection safe against a concurrent enqueue).
        if tr.get_range(zone.items, zone.items + b"\xff", limit=1):
            due = now  # records without index entries should not exist; look again soon
        elif pointer.last_active + min_inactive <= now and not taken:
            collect_pointer(tr, layout, tenant, pointer)
            flush_stats(tr, layout, stats)
            return taken
    release_zone(tr, layout, tenant, pointer, due, now, bool(taken), min_inactive, marker)
    flush_stats(tr, layout, stats)
    return taken
