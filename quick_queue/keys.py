"""Every key of a queue, in FoundationDB's tuple encoding.

Layout under one root per queue name (integers are microseconds since the UNIX epoch)::

    zones/{tenant}/items/{job_id}                   job record (JSON header, newline, payload)
    zones/{tenant}/ready/{priority}/{seq}/{job_id}  ''  visible now: priority, then FIFO
    zones/{tenant}/scheduled/{at}/{job_id}          ''  delayed, backoff, snoozed
    zones/{tenant}/leased/{expiry}/{job_id}         ''  in flight
    dead/{tenant}/{job_id}                          dead letter: the job record, state "d",
                                                    with when, why (kind) and reason
    pointers/marker/{tenant}                        the zone's promise (see core.pointers)
    pointers/record/{tenant}                        pointer record (JSON)
    pointers/due/{vesting}/{tenant}                 ''  what scanners read
    stats/{topic}/{counter}                         8-byte little-endian atomic counter
    history/{tenant}/{job_id}                       kept result of a finished job (opt-in;
                                                    see core.history)
    history_expiry/{expires}/{tenant}/{job_id}      ''  what pruning reads, oldest first
    flow/schedule/{name}                            periodic schedule: cursor + definition
    flow/tenant/{tenant}, flow/topic/{topic}        ''  a pause (see quick_queue.flow)
    flow/weight/{tenant}                            a tenant's weight (decimal text)
    flow/cap/{topic}                                a topic's max running (decimal text)
    slots/{topic}/{i}                               [tenant, job_id, token] of a capped run
    flow/rate/{topic}                               a topic's rate: microseconds between starts
    rates/{topic}                                   the rate's next free start time (8 bytes)
    held/{topic}/{tenant}/{job_id}                  ''  a job of a paused topic, set aside
                                                    (see core.pauses)
    flow/dcap/{topic}, flow/drate/{topic}           a cap or rate declared by a handler's @job
    flow/tcap/{tenant}, flow/trate/{tenant}         a tenant's cap or rate (core.caps, core.rates)
    fts/{tenant}/{i}, ftr/{tenant}                  a tenant's running slots and next start time
    zones/{tenant}/x/{job_id}                       an extended lease's current expiry and token
                                                    (core.records: extension without a rewrite)
    dw/{tenant}/{child}                             what a job enqueued with after= waits for
    de/{parent tenant}/{parent}/{tenant}/{child}    ''  one edge per parent and child
    dh/{parent tenant}/{parent}                     ''  the parent has children
    flow/deps/on                                    ''  the queue has used after= (see
                                                    core.dependencies)

Dead letters live in their own subspace rather than inside the zone: listing or purging them
across tenants is then one range read, and a zone holding only dead letters has no work, so it
needs no pointer.

Keys are bytes identical to ``fdb.tuple.pack`` output (the tests check this), but packed by a
small encoder for the three element types used here: the pure-Python tuple layer costs ~9 us per
key, which on the hot path (several keys per job) would cost more than the commit itself.
"""

from __future__ import annotations

import functools
import struct

from quick_queue.errors import ArgumentTypeError, ConfigurationError, InvalidArgument

Element = int | str | bytes

_INT_ZERO = 0x14
_SIZE_LIMITS = [(1 << (8 * i)) - 1 for i in range(9)]


def _escape(raw: bytes) -> bytes:
    # ``0 in raw``, not ``b"\x00" in raw``: CPython first tries a bytes operand as an integer
    # and clears the TypeError before it searches (measured: 315 ns against 28 for 24 bytes,
    # twice per enqueue before; callgrind showed the exception machinery).
    return raw.replace(b"\x00", b"\x00\xff") if 0 in raw else raw


def pack(items: tuple[Element, ...]) -> bytes:
    """``fdb.tuple.pack`` for tuples of int, str and bytes."""
    out = bytearray()
    for item in items:
        if isinstance(item, str):
            out += b"\x02" + _escape(item.encode("utf-8")) + b"\x00"
        elif isinstance(item, bool):
            raise ArgumentTypeError("bool is not a key element here")
        elif isinstance(item, int):
            if item == 0:
                out.append(_INT_ZERO)
            elif item > 0:
                if item >= _SIZE_LIMITS[8]:
                    raise InvalidArgument("integer too large for a key (at most 2**64 - 2)")
                n = (item.bit_length() + 7) // 8
                out.append(_INT_ZERO + n)
                out += item.to_bytes(n, "big")
            else:
                if -item >= _SIZE_LIMITS[8]:
                    raise InvalidArgument("integer too small for a key (at least -(2**64 - 2))")
                n = ((-item).bit_length() + 7) // 8
                out.append(_INT_ZERO - n)
                out += (item + _SIZE_LIMITS[n]).to_bytes(n, "big")
        elif isinstance(item, bytes):
            out += b"\x01" + _escape(item) + b"\x00"
        else:
            raise ArgumentTypeError(
                f"cannot pack {type(item).__name__} into a key (int, str or bytes only)"
            )
    return bytes(out)


def pack_str(item: str) -> bytes:
    """``pack((item,))`` for one string: the hot path of every job key."""
    raw = item.encode("utf-8")
    if 0 in raw:  # (an int: see _escape)
        raw = raw.replace(b"\x00", b"\x00\xff")
    return b"\x02" + raw + b"\x00"


# pack_int's shortcuts (issue 10: every job key holds two or three integers): the type codes
# of positive integers by length, and the whole packing of the small ones (priorities are at
# most 1000). Measured: 0.15 µs for a priority, 0.3 for a time, against 0.5 before.
_POSITIVE_CODES = tuple(bytes((_INT_ZERO + n,)) for n in range(9))
_SMALL_INTS = tuple(pack((i,)) for i in range(1024))


def pack_int(item: int) -> bytes:
    """``pack((item,))`` for one integer."""
    if 0 <= item < 1024:
        return _SMALL_INTS[item]
    if 0 < item < _SIZE_LIMITS[8]:
        n = (item.bit_length() + 7) >> 3
        return _POSITIVE_CODES[n] + item.to_bytes(n, "big")
    return pack((item,))


def unpack(key: bytes, offset: int = 0) -> tuple[Element, ...]:
    """``fdb.tuple.unpack`` for tuples of int, str and bytes, starting at ``offset``."""
    out: list[Element] = []
    pos = offset
    end = len(key)
    while pos < end:
        code = key[pos]
        if code == 0x01 or code == 0x02:
            start = pos + 1
            chunks = []
            while True:
                zero = key.index(b"\x00", start)
                if zero + 1 < end and key[zero + 1] == 0xFF:
                    chunks.append(key[start : zero + 1])
                    start = zero + 2
                    continue
                chunks.append(key[start:zero])
                break
            raw = b"".join(chunks)
            out.append(raw.decode("utf-8") if code == 0x02 else raw)
            pos = zero + 1
        elif 0x0C <= code <= 0x1C:
            n = code - _INT_ZERO
            if n >= 0:
                out.append(int.from_bytes(key[pos + 1 : pos + 1 + n], "big"))
                pos += 1 + n
            else:
                n = -n
                out.append(int.from_bytes(key[pos + 1 : pos + 1 + n], "big") - _SIZE_LIMITS[n])
                pos += 1 + n
        else:
            raise InvalidArgument(
                f"unsupported tuple type code 0x{code:02x} in key {key!r:.120}: not a key "
                "of quick_queue's layout"
            )
    return tuple(out)


def counter(value: int) -> bytes:
    return struct.pack("<q", value)


def read_counter(raw: bytes | None) -> int:
    if not raw:
        return 0
    return int.from_bytes(raw[:8].ljust(8, b"\x00"), "little", signed=True)


# Zone's constant key elements, packed: the zone, its items, ready, scheduled and leased
# indexes, the dead letters and the pointer marker.
_ZONE_PARTS = tuple(pack((name,)) for name in ("z", "i", "r", "s", "l", "d", "pm"))


class Zone:
    """The keys of one tenant's queue zone."""

    __slots__ = ("dead", "items", "leased", "marker", "prefix", "ready", "scheduled", "tenant")

    def __init__(self, root: bytes, tenant: str) -> None:
        # The tenant packed once and the constant elements taken from _ZONE_PARTS (the same
        # bytes as packing each tuple): a zone is made at the first job or visit of each
        # tenant, 7 tuple packings before (issue 10: many one-job tenants).
        packed = pack_str(tenant)
        self.tenant = tenant
        self.prefix = prefix = root + _ZONE_PARTS[0] + packed
        self.items = prefix + _ZONE_PARTS[1]
        self.ready = prefix + _ZONE_PARTS[2]
        self.scheduled = prefix + _ZONE_PARTS[3]
        self.leased = prefix + _ZONE_PARTS[4]
        self.dead = root + _ZONE_PARTS[5] + packed  # outside the zone: see the module docstring
        # pointers/marker/{tenant}, kept with the zone's keys: read by every enqueue (packing
        # it cost ~1 µs a call; Layout.marker answers from here)
        self.marker = root + _ZONE_PARTS[6] + packed

    def item(self, job_id: str) -> bytes:
        return self.items + pack_str(job_id)

    def dead_key(self, job_id: str) -> bytes:
        return self.dead + pack_str(job_id)

    def ready_key(self, priority: int, seq: int, job_id: str) -> bytes:
        return self.ready + pack_int(priority) + pack_int(seq) + pack_str(job_id)

    def scheduled_key(self, at: int, job_id: str) -> bytes:
        return self.scheduled + pack_int(at) + pack_str(job_id)

    def leased_key(self, expiry: int, job_id: str) -> bytes:
        return self.leased + pack_int(expiry) + pack_str(job_id)

    def new_job_keys(
        self, job_id: str, priority: int, due: int, ready: bool
    ) -> tuple[bytes, bytes]:
        """``item(job_id)`` and the job's ready (else scheduled) entry, the id packed once
        (enqueue writes both for every job)."""
        packed = pack_str(job_id)
        if ready:
            return self.items + packed, self.ready + pack_int(priority) + pack_int(due) + packed
        return self.items + packed, self.scheduled + pack_int(due) + packed

    def index_key(self, state: str, priority: int, at: int, job_id: str) -> bytes:
        if state == "r":
            return self.ready_key(priority, at, job_id)
        if state == "s":
            return self.scheduled_key(at, job_id)
        return self.leased_key(at, job_id)

    def until(self, prefix: bytes, at: int) -> tuple[bytes, bytes]:
        """Entries of the ``scheduled`` or ``leased`` index with a time at or before ``at``."""
        return prefix, prefix + pack((at + 1,))


class Layout:
    """All keys of the queue called ``name``."""

    def __init__(self, name: str) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"a queue name must be a non-empty string, got {name!r}")
        self.name = name
        self.root = pack(("qq", name))
        self.zones_prefix = self.root + pack(("z",))
        self.dead_prefix = self.root + pack(("d",))
        self.marker_prefix = self.root + pack(("pm",))
        self.record_prefix = self.root + pack(("pr",))
        self.due_prefix = self.root + pack(("pd",))
        self.stats_prefix = self.root + pack(("st",))
        self.history_prefix = self.root + pack(("h",))
        self.expiry_prefix = self.root + pack(("hx",))
        # flow control (quick_queue.flow): one small range, read whole by each scanner
        self.flow_prefix = self.root + pack(("f",))
        self.held_prefix = self.root + pack(("fh",))  # outside flow/: not read by scanners
        self.slots_prefix = self.root + pack(("fs",))
        self.rates_prefix = self.root + pack(("fr",))
        self.zone = functools.lru_cache(maxsize=65536)(self._zone)
        # per topic and counter name: written by every enqueue and settle (~1 µs a packing)
        self.stat = functools.lru_cache(maxsize=4096)(self._stat)

    def _zone(self, tenant: str) -> Zone:
        return Zone(self.root, tenant)

    def dead(self, tenant: str, job_id: str) -> bytes:
        return self.zone(tenant).dead_key(job_id)

    def marker(self, tenant: str) -> bytes:
        return self.zone(tenant).marker

    # The pointer and due keys with the one-element packers (the same bytes as the tuple
    # pack, a third of the time: timeit 1.66 -> 0.50 µs and 5.65 -> 1.85 µs; a zone visit
    # packs the pointer key twice and two due keys, issue 10).
    def pointer(self, tenant: str) -> bytes:
        return self.record_prefix + pack_str(tenant)

    def due(self, vesting: int, tenant: str) -> bytes:
        return self.due_prefix + pack_int(vesting) + pack_str(tenant)

    def due_until(self, at: int) -> tuple[bytes, bytes]:
        return self.due_prefix, self.due_prefix + pack((at + 1,))

    def _stat(self, topic: str, name: str) -> bytes:
        return self.stats_prefix + pack((topic, name))

    def history(self, tenant: str, job_id: str) -> bytes:
        return self.history_prefix + pack_str(tenant) + pack_str(job_id)

    def expiry(self, expires: int, tenant: str, job_id: str) -> bytes:
        return self.expiry_prefix + pack_int(expires) + pack_str(tenant) + pack_str(job_id)

    def schedule(self, name: str) -> bytes:
        return self.flow_prefix + pack(("s", name))

    def pause(self, kind: str, name: str) -> bytes:
        """``kind`` is "tenant" or "topic"."""
        return self.flow_prefix + pack((kind, name))

    def weight(self, tenant: str) -> bytes:
        return self.flow_prefix + pack(("weight", tenant))

    def cap(self, topic: str) -> bytes:
        return self.flow_prefix + pack(("cap", topic))

    def rate(self, topic: str) -> bytes:
        return self.flow_prefix + pack(("rate", topic))

    def rate_state(self, topic: str) -> bytes:
        return self.rates_prefix + pack_str(topic)

    def slots(self, topic: str) -> bytes:
        return self.slots_prefix + pack_str(topic)

    def held(self, topic: str, tenant: str, job_id: str) -> bytes:
        return self.held_prefix + pack_str(topic) + pack_str(tenant) + pack_str(job_id)

    def tenant_of_zone_key(self, key: bytes) -> str:
        tenant = unpack(key, len(self.zones_prefix))[0]
        assert isinstance(tenant, str)
        return tenant
