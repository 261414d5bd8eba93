"""Reading and moving job records: the small steps every core transaction shares."""

from __future__ import annotations

from quick_queue.errors import InvalidArgument
from quick_queue.keys import Layout, Zone, counter, pack, pack_str, unpack
from quick_queue.kv.api import ReadView, Transaction
from quick_queue.models import JobRecord

Stats = dict[tuple[str, str], int]
UNREADABLE_TOPIC = "?"  # the topic an unreadable record is counted and listed under


def load_record(tr: Transaction, zone: Zone, job_id: str) -> JobRecord | None:
    """The live record of ``job_id``, None if there is none; ``UnreadableRecord`` (with the
    stored bytes) if what is stored cannot be decoded."""
    raw = tr.get(zone.item(job_id))
    return JobRecord.decode(job_id, raw) if raw is not None else None


#: "not read yet" (compared by identity), for an optional stored value a caller may pass
UNREAD: bytes = b"\x00unread"


def clear_index(
    tr: Transaction, zone: Zone, record: JobRecord, *, extension: bytes | None = UNREAD
) -> None:
    """Remove ``record``'s index entry. A leased record's entry is wherever extensions moved
    it (``clear_lease``; ``extension``: its extension record, when already read)."""
    if record.state == "l":
        clear_lease(tr, zone, record, extension)
    else:
        tr.clear(zone.index_key(record.state, record.priority, record.at, record.job_id))


# -- extended leases (issue 14) ----------------------------------------------------------------
# An extension writes small keys only, never the job record (whose payload may be 100 kB).
#
# Where a lease lives: the record says *that* the job is leased and by whom (state "l", the
# token) and the expiry it was leased with; the leased index entry
# ``zones/{t}/l/{expiry}/{job_id}`` = token is where the lease *is*: its key is the current
# expiry (what the reaper, ``promote_due``, scans) and its value the token (what a completion's
# fast path checks). An extension moves that entry to the later expiry and writes
# ``zones/{t}/x/{job_id}`` = (expiry, token), the *extension record*, so that whoever holds
# only the job id (a cancel, a slow-path settle, the reaper's check, ``get_job``, a cap's
# slot check) can find the entry and the real expiry: ``lease_expiry``/``with_extension``.
# The moved entry's value carries ``EXTENDED`` after the token, so a completion that reads
# the entry anyway knows whether there is an extension record to clear, without reading it.
#
# Why the invariants of DESIGN.md §4 hold:
# - one lease, one entry: dequeue writes the entry; an extension reads it (a regular read) and
#   moves it in one transaction; every end of a lease (settle, cancel, the reaper, burial)
#   clears the entry it finds and the extension record, so any of them racing an extension
#   conflicts with it (both read what the other writes) and one of the two is refused;
# - no double lease: a job is leased again only through ready, which only the reaper puts an
#   expired lease back in, and it checks that the entry it met is the *current* one (its time
#   equals ``lease_expiry``), so an extended lease is reaped at its extended expiry, never
#   at the one in the record;
# - fencing: the token check stays where it was (the record's token on the slow paths, the
#   entry's value on the fast one); an extension record is believed only for its own token,
#   and an extension checks the entry's value before it moves it, so a stale extension record
#   can never revive a lost lease;
# - lease-loss detection: an extension whose entry is gone (settled, cancelled, reaped) finds
#   neither its entry nor its extension record, and reports the lease lost, as before.
# Why the record keeps state, token and the first expiry: the token is what fences every slow
# path and ``lease_loss``, and the expiry at lease time is where the entry is until an
# extension moves it, so a never-extended lease (nearly all of them) costs no extra key.
_EXTENSION = pack(("x",))
EXTENDED = b"+"  # suffix of a leased entry's value (the token) once an extension moved it


def extension_key(zone: Zone, job_id: str) -> bytes:
    """``zones/{tenant}/x/{job_id}``: where an extended lease's current expiry is kept."""
    return zone.prefix + _EXTENSION + pack_str(job_id)


def encode_extension(expiry: int, token: str) -> bytes:
    return pack((expiry, token))


def extended_expiry(raw: bytes | None, token: str | None) -> int | None:
    """The expiry the extension record ``raw`` gives the lease ``token``; None if it is not
    that lease's (or there is none)."""
    if raw is None or token is None:
        return None
    try:
        expiry, owner = unpack(raw)
    except (ValueError, InvalidArgument):  # (UnicodeDecodeError is a ValueError)
        return None
    return int(expiry) if owner == token and isinstance(expiry, int) else None


def entry_holds(value: bytes | None, token: str) -> bool:
    """Whether a leased entry's value names the lease ``token`` (moved by extensions or not)."""
    if value is None:
        return False
    mine = token.encode()
    return value == mine or value == mine + EXTENDED


def with_extension(record: JobRecord, raw: bytes | None) -> JobRecord:
    """``record`` with the current expiry of its lease (``raw``: its extension record, read
    with it); views and checks that show or compare a lease's expiry read through this."""
    expiry = extended_expiry(raw, record.token) if record.state == "l" else None
    if expiry is not None:
        record.at = expiry
    return record


def lease_expiry(tr: ReadView, zone: Zone, record: JobRecord) -> int:
    """The current expiry of the leased ``record``'s lease (reads its extension record)."""
    expiry = extended_expiry(tr.get(extension_key(zone, record.job_id)), record.token)
    return record.at if expiry is None else expiry


def clear_lease(
    tr: Transaction, zone: Zone, record: JobRecord, extension: bytes | None = UNREAD
) -> None:
    """Remove a leased record's index entry (where extensions moved it) and its extension
    record. ``extension``: that record's stored value if the caller read it already."""
    key = extension_key(zone, record.job_id)
    raw = tr.get(key) if extension is UNREAD else extension
    expiry = extended_expiry(raw, record.token)
    if raw is not None:
        tr.clear(key)
    tr.clear(zone.leased_key(record.at if expiry is None else expiry, record.job_id))


def undo_lease(
    tr: Transaction, zone: Zone, job_id: str, at: int, entry: bytes = b""
) -> JobRecord:
    """Take back a lease this same transaction gave (a cap, a rate or a pause turned the job
    away before anyone ran it): the job is scheduled at ``at`` with its attempt given back,
    under a scheduled entry holding ``entry`` (``dequeue.KEEP_PLACE``: back to its old place
    in line when promoted). No extension can exist yet. Returns the record written."""
    record = JobRecord.decode(job_id, tr.get(zone.item(job_id)) or b"")
    tr.clear(zone.leased_key(record.at, job_id))
    record.state, record.at, record.token = "s", at, None
    record.attempt -= 1  # the lease is undone in the same transaction: nothing spent
    tr.set(zone.scheduled_key(at, job_id), entry)
    tr.set(zone.item(job_id), record.encode())
    return record


def bury(
    tr: Transaction,
    zone: Zone,
    record: JobRecord,
    now: int,
    kind: str,
    reason: str,
    stats: Stats,
) -> None:
    """Move a live job to the dead letters. Its index entry must already be cleared.

    The dead letter is the record itself (its payload text carried over unparsed) with the
    dead fields; an over-long reason is trimmed to fit one value (``JobRecord.encode``)."""
    tr.clear(zone.item(record.job_id))
    if record.state == "l":  # a lease ends here: its extension record goes too (if any)
        tr.clear(extension_key(zone, record.job_id))
    record.bury(now, kind, reason)
    tr.set(zone.dead_key(record.job_id), record.encode())
    stats[(record.topic, "dead")] = stats.get((record.topic, "dead"), 0) + 1


def bury_unreadable(
    tr: Transaction, zone: Zone, job_id: str, raw: bytes, now: int, reason: str, stats: Stats,
) -> None:
    """Move a record that cannot be decoded to the dead letters, its stored bytes kept (see
    ``JobRecord.unreadable``). Its index entry, which the caller met, must be cleared."""
    tr.clear(zone.item(job_id))
    tr.clear(extension_key(zone, job_id))  # it may have been leased and extended
    dead = JobRecord.unreadable(
        job_id, raw, now, f"the stored record could not be decoded: {reason}", 0
    )
    tr.set(zone.dead_key(job_id), dead.encode())
    stats[(UNREADABLE_TOPIC, "dead")] = stats.get((UNREADABLE_TOPIC, "dead"), 0) + 1


class ByteBudget:
    """When a batch must stop taking work: once its transaction's approximate size (what
    FoundationDB counts toward its limit: mutations and conflict ranges) reaches ``limit``.

    The size is asked for only when the bytes the batch estimates it added since the last
    answer could fill half the room left (asking is not free: the embedded engine sums every
    read range so far), so a batch of small outcomes asks a few times, and one nearing the
    limit asks before each outcome. ``limit=None``: no limit."""

    __slots__ = ("limit", "pending", "size", "tr")

    def __init__(self, tr: Transaction, limit: int | None) -> None:
        self.tr, self.limit = tr, limit
        self.size = 0  # the last answer
        self.pending = 0  # bytes estimated since

    def add(self, estimate: int) -> None:
        self.pending += estimate

    def spent(self) -> bool:
        if self.limit is None or self.pending * 2 < self.limit - self.size:
            return False
        self.size, self.pending = self.tr.get_approximate_size(), 0
        return self.size >= self.limit


def stat_add(tr: Transaction, layout: Layout, topic: str, name: str, amount: int = 1) -> None:
    tr.add(layout.stat(topic, name), counter(amount))


def flush_stats(tr: Transaction, layout: Layout, stats: Stats) -> None:
    for (topic, name), amount in stats.items():
        if amount:
            stat_add(tr, layout, topic, name, amount)
