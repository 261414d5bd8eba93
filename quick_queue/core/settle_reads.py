"""The reads of a settle batch (``core.settle.settle_many``), made together: see
``BatchReads``. Apart from core/settle.py to keep each module short."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from quick_queue.core.dependencies import flag_key
from quick_queue.core.records import EXTENDED, extension_key
from quick_queue.keys import Layout, pack_int, pack_str
from quick_queue.kv.api import Transaction
from quick_queue.outcomes import Outcome, OutcomeKind

READ_WINDOW = 64  # records a batch reads in one round (a cut batch reads little it won't use)
# Outcome kinds that usually put the job back in a zone, whose marker ``touch_pointer`` reads
_RESCHEDULING = frozenset((OutcomeKind.RETRY, OutcomeKind.SNOOZE, OutcomeKind.RELEASE))
Markers = dict[str, bytes | None]  # tenant -> its pointer marker as this transaction sees it
Intact = tuple[bytes, ...]  # see BatchReads.intact
_JOB_ID: Callable[[Outcome], str] = attrgetter("job_id")
DONE = OutcomeKind.DONE
_STRING = pack_str("")[:1]  # the tuple layer's type code of a string: pack_str = it, bytes, 0


class BatchReads:
    """The reads of a settle batch, made together: one round for the leased entries of every
    completion (the fast path), then the records (and zone markers) of the outcomes that need
    them, ``READ_WINDOW`` outcomes per round, in the order the batch meets them.

    An outcome whose job appeared earlier in the batch (a repeat) reads for itself instead:
    the earlier outcome may have settled it, which the batched reads predate."""

    def __init__(self, tr: Transaction, layout: Layout, outcomes: list[Outcome]) -> None:
        self.tr, self.layout, self.outcomes = tr, layout, outcomes
        count = len(outcomes)
        self.repeat = _repeats(outcomes)
        repeat = self.repeat
        fast: list[int] = []
        keys: list[bytes] = []
        items: list[bytes] = []
        zone_of = layout.zone
        # The jobs of one zone visit share their tenant and lease expiry, and a batch's
        # outcomes come in runs of them: the prefix of their leased entries is packed once a
        # run (issue 10: pack_int once an outcome was 5 % of the settle path's instructions).
        # Each key is joined in one allocation from its prefix (with the tuple layer's string
        # code), the id's bytes and the string's end (a concatenation a piece cost about 1k
        # instructions each: 4.6k -> 3.4k an outcome for its two keys, callgrind).
        tenant, at, leased_at, items_at = "", 0, b"", b""
        join, end = b"".join, b"\x00"
        for i, o in enumerate(outcomes):
            if (o.kind is DONE or o.kind == DONE) and o.lease_at and not repeat[i]:
                if o.lease_at != at or o.tenant != tenant:
                    tenant, at = o.tenant, o.lease_at
                    zone = zone_of(tenant)
                    leased_at = zone.leased + pack_int(at) + _STRING
                    items_at = zone.items + _STRING
                raw = o.job_id.encode()
                if 0 in raw:  # (an int operand: see keys._escape) a NUL, escaped as pack_str
                    raw = pack_str(o.job_id)[1:-1]
                fast.append(i)
                keys.append(join((leased_at, raw, end)))
                items.append(join((items_at, raw, end)))
        # by index: the keys a completion whose lease entry holds its token deletes (its
        # leased entry, its record, and its extension record if an extension moved the
        # entry), else None (a list: cheaper than a dict's get, once an outcome).
        # ``entry_holds`` inlined.
        self.intact: list[Intact | None] = [None] * count
        intact = self.intact
        # With them, the dependencies' flag that ``dependencies.settled`` reads at the end of
        # every batch (a regular read either way; one statement a settle commit less).
        values = tr.get_many([*keys, flag_key(layout)])
        self.dependencies_flag = values.pop()
        for i, key, item, value in zip(fast, keys, items, values, strict=True):
            if value is not None:
                mine = outcomes[i].token.encode()
                if value == mine:
                    intact[i] = (key, item)
                elif value == mine + EXTENDED:
                    intact[i] = (key, item, extension_key(zone_of(outcomes[i].tenant),
                                                          outcomes[i].job_id))
        self._slow = [i for i in range(count) if intact[i] is None and not repeat[i]]
        self._fetched = 0  # how many of ``_slow`` were read
        self._raw: dict[int, tuple[bytes | None, bytes | None]] = {}
        self.markers: Markers = {}

    def record(self, index: int) -> tuple[bytes | None, bytes | None]:
        """The stored record of ``outcomes[index]`` (a slow-path outcome, met in order) and
        its extension record."""
        if index not in self._raw:
            window = self._slow[self._fetched : self._fetched + READ_WINDOW]
            assert window and window[0] == index, "slow outcomes are met in batch order"
            self._fetched += len(window)
            keys = []
            for i in window:
                zone = self.layout.zone(self.outcomes[i].tenant)
                keys += [zone.item(self.outcomes[i].job_id),
                         extension_key(zone, self.outcomes[i].job_id)]
            tenants = sorted({self.outcomes[i].tenant for i in window
                              if self.outcomes[i].kind in _RESCHEDULING} - set(self.markers))
            values = self.tr.get_many(keys + [self.layout.marker(t) for t in tenants])
            for n, i in enumerate(window):
                self._raw[i] = (values[2 * n], values[2 * n + 1])
            self.markers.update(zip(tenants, values[len(keys):], strict=True))
        return self._raw.pop(index)


def _repeats(outcomes: list[Outcome]) -> list[bool]:
    """Whether each outcome's job appeared earlier in the batch (rare: a set of the batch's
    job ids, built in C, tells whether to look one by one; ids distinct, jobs distinct)."""
    if len(set(map(_JOB_ID, outcomes))) == len(outcomes):
        return [False] * len(outcomes)
    idents = [(o.tenant, o.job_id) for o in outcomes]
    seen: set[tuple[str, str]] = set()
    repeat = []
    for ident in idents:
        repeat.append(ident in seen)
        seen.add(ident)
    return repeat
