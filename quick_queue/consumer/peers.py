"""Home zones: how consumers of one queue split the due zones between them so that two of them
rarely visit one zone at once.

Every scanner reads the same head of the due index (the ``peek_max`` oldest due zones) and draws
from it at random. With many consumers their draws overlap: two visits of one zone conflict on
its pointer, and the loser's whole visit (several zones in one transaction, see
``consumer.scanner``) is thrown away. Measured (issue 10, ``scripts/bench.py --only races``, 16
one-worker consumer processes over 1,000 tenants): 42-45 % of zone visits lost; two processes
of 16 workers over 1,000 tenants of 20 jobs lost 17 %.

So each consumer draws from its *home* entries: a due entry is at home with consumer ``i`` of
``n`` when ``crc32(entry key) % n == i``, where the ``n`` live consumers are numbered by their
worker ids in the store's live-worker records (``core.workers``, written by each consumer's
heartbeat). Every consumer that sees the same workers gives every due entry to exactly one of
them. Why the entry's key (vesting time and tenant) and not the tenant: a zone's pointer moves
each time it is visited, so its home moves with it, and no tenant is tied to one consumer.

A consumer draws its oldest home entries first. One that finds none in the head of the index
reads one page further, and when it finds none there either it helps the others: it draws one
zone a visit from the newest quarter of the due entries, the ones their owners reach last (as
in work stealing, where the owner of a queue and a thief take from opposite ends). Consumers
run out of home entries often: a zone's entry moves to a new home at each visit, at random,
so a quick consumer's home entries drain while a slow one's pile up. Measured with the races
bench (``scripts/bench.py --only races``, 16 one-worker consumers, 1,000 tenants of 5 jobs,
all falling due at once), the share of zone visits lost:

* drawn at random from the head, as before the split: 42-46 %;
* home entries, and a consumer without any drew from the whole head: 15-22 %;
* ... or from the newest quarter, as many zones a visit as before: 16-19 %. Such thieves lost
  62 % of their zones, to other thieves and to owners: several of them taking up to 10 zones
  a visit from the same 75 entries;
* ... one zone a thief's visit: 4.0-7.5 % over 9 runs, median 5.5 %. Instrumented, the races
  were near the end of the drain (fewer than 150 entries due): there thieves lost 68 % of their
  visits, to other thieves and to owners, all drawing from the same few newest entries;
* ... thieves in *stealing slots* (below): 1.9-5.9 % over 14 runs, median 3.5 % (3.9-7.6 %,
  median 5.8 %, without them, interleaved).

Stealing slots. With fewer newest entries than thieves, thieves drawing at random meet. So a
thief takes the entry of its slot (``steal_slot``: its place among the consumers, turned every
``STEAL_TURN`` so that each consumer holds the low slots in turn): slot ``s`` takes the
``s``-th newest entry. A thief whose slot is past the entries (and past the first two: of two
consumers, the one with nothing of its own always steals) takes its entry only if the zone
holds at least ``STEAL_DEPTH`` ready jobs, else nothing, and scans again in 5 ms. A shallow
zone is emptied by one visitor, and its owner or the thief of its slot comes for it; a deep one (a
hot tenant with every consumer sharing it) is worth everyone's visit, as before.

So the split never starves a zone:

* an entry due for longer than ``OPEN_AFTER`` is every consumer's: a consumer whose workers
  are all busy does not scan, and the zones at home with it must not wait for it;
* a consumer with nothing of its own takes the others' newest entries (in its stealing slot,
  or when deep);
* one zone due, of one busy tenant: it is at home with one consumer, and every other finds no
  home entry and takes it as the newest;
* a consumer killed without a word still counts until its record lapses (three missed
  heartbeats, 15 s): meanwhile its home entries are taken by consumers with nothing of their
  own, and by anyone once they are ``OPEN_AFTER`` old.

The view of the workers is read again every ``REFRESH_SECONDS`` and after a lost race (a race
usually means the views differ: a consumer started or stopped). A consumer not yet in the
records (its first heartbeat is still being written) counts itself in. While views differ the
split is imperfect and races come back; nothing is lost either way, since the store's
conflicts, not this split, keep a zone to one visit at a time.
"""

from __future__ import annotations

import bisect
import time
import zlib
from collections.abc import Callable

from quick_queue.core.workers import live_workers
from quick_queue.kv.api import ReadView

#: Seconds between reads of the live workers (a range read of one short record a worker).
REFRESH_SECONDS = 0.25
#: Microseconds an entry may stay due before every consumer draws it (see the module docstring).
OPEN_AFTER = 5_000_000
#: Microseconds of store time for which a consumer keeps its stealing slot (``steal_slot``).
STEAL_TURN = 250_000
#: Ready jobs from which a zone is worth a thief that is not in a stealing slot: more than two
#: visits' shares (``consumer.scanner.ZONE_SHARE``) while other zones are due, so the visitors
#: that find it first leave work behind (a hot zone, a tenant's backlog).
STEAL_DEPTH = 9


class PeerView:
    """This consumer's place among the live consumers of its queue (``index`` of ``count``),
    and which due entries are its own. ``worker_id``: its live-worker record's id; None (a
    drain, which keeps no record) makes every entry home, as with one consumer."""

    def __init__(self, queue: str, worker_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.index = 0
        self.count = 1
        self._clock = clock
        self._read_at: float | None = None

    def due(self) -> bool:
        """Whether the view should be read again now."""
        if self.worker_id is None:
            return False
        return self._read_at is None or self._clock() - self._read_at >= REFRESH_SECONDS

    def forget(self) -> None:
        """Read the view again at the next scan (a lost race suggests it is out of date)."""
        self._read_at = None

    def refresh(self, reader: ReadView, now: float) -> None:
        """Read the live workers (``now``: the store's time, in seconds) through ``reader``
        (a snapshot read: the view needs no conflict) and place this consumer among them."""
        self._read_at = self._clock()
        if self.worker_id is None:
            return
        ids = {info.worker_id for info in live_workers(reader, self.queue, now)}
        ids.add(self.worker_id)  # (its own first heartbeat may not be written yet)
        ordered = sorted(ids)
        self.index, self.count = ordered.index(self.worker_id), len(ordered)

    def steal_slot(self, now: int) -> int:
        """This consumer's stealing slot at store time ``now`` (microseconds): its place among
        the ``count`` consumers turned by one every ``STEAL_TURN``, so that consumers with
        the same view hold distinct slots and each holds the low ones in turn."""
        return (self.index + now // STEAL_TURN) % self.count

    def homes(self, keys: list[bytes], want: int, open_before: bytes) -> list[bytes]:
        """The due entries ``keys`` (in key order: oldest first) that this consumer may
        draw: every one due since before ``open_before`` (a due entry's key for ``now -
        OPEN_AFTER``; they come first), and the oldest ``want`` of the rest that are at home
        here (a walk of about ``want * count`` keys, not all of them)."""
        count = self.count
        if count == 1:
            return keys
        cut = bisect.bisect_left(keys, open_before)
        found = keys[:cut]
        index, crc, homes = self.index, zlib.crc32, 0
        for position in range(cut, len(keys)):
            key = keys[position]
            if crc(key) % count == index:
                found.append(key)
                homes += 1
                if homes >= want:
                    break
        return found

