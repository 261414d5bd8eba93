"""The reads of a settle batch (``core.settle.settle_many``), made together: see
``BatchReads``. Apart from core/settle.py to keep each module short."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, sub

from quick_queue.core.dependencies import flag_key
from quick_queue.core.records import EXTENDED, extension_key
from quick_queue.keys import Layout, pack_int, pack_str
from quick_queue.kv.api import Transaction
from quick_queue.outcomes import Outcome, OutcomeKind

# A visit's completions in a batch are read by one range read from RANGE_MIN of them on (and
# cleared by one range clear): see _read_entries for the measures.
RANGE_MIN = 5
RANGE_SPARE = 64  # rows a visit's range read may return beyond twice its completions
READ_WINDOW = 64  # records a batch reads in one round (a cut batch reads little it won't use)
# Outcome kinds that usually put the job back in a zone, whose marker ``touch_pointer`` reads
_RESCHEDULING = frozenset((OutcomeKind.RETRY, OutcomeKind.SNOOZE, OutcomeKind.RELEASE))
Markers = dict[str, bytes | None]  # tenant -> its pointer marker as this transaction sees it
Intact = tuple[bytes, ...]  # see BatchReads.intact
Span = tuple[bytes, bytes]  # see _read_entries
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
        # where each run of one leased prefix (one visit's) starts in ``keys``, and the prefix
        starts: list[int] = []
        prefixes: list[bytes] = []
        for i, o in enumerate(outcomes):
            if (o.kind is DONE or o.kind == DONE) and o.lease_at and not repeat[i]:
                if o.lease_at != at or o.tenant != tenant:
                    tenant, at = o.tenant, o.lease_at
                    zone = zone_of(tenant)
                    leased_at = zone.leased + pack_int(at) + _STRING
                    items_at = zone.items + _STRING
                    starts.append(len(keys))
                    prefixes.append(leased_at)
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
        values, self.dependencies_flag, self.spans, spanned = _read_entries(
            tr, flag_key(layout), keys, _runs(keys, starts, prefixes))
        extensions: list[bytes] = []
        for i, key, item, value in zip(fast, keys, items, values, strict=True):
            if value is not None:
                mine = outcomes[i].token.encode()
                if value == mine:
                    intact[i] = (key, item)
                elif value == mine + EXTENDED:
                    extension = extension_key(zone_of(outcomes[i].tenant), outcomes[i].job_id)
                    intact[i] = (key, item, extension)
                    extensions.append(extension)
        #: what a batch whose every outcome is an intact completion clears besides
        #: ``spans``: the records, the extension records, the entries outside any span
        self.clears = items + extensions
        if not spanned:
            self.clears += keys
        elif len(spanned) < len(keys):
            self.clears += [key for key in keys if key not in spanned]
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


def _runs(keys: list[bytes], starts: list[int], prefixes: list[bytes]) -> list[list[bytes]]:
    """The leased entries ``keys`` of a batch's completions, by visit (the runs of one prefix
    starting at ``starts``, joined): only the visits of ``RANGE_MIN`` entries or more, if
    any, else none (the usual small batch of many visits pays no grouping; a visit whose
    runs are each shorter is then read by key, as any short visit)."""
    bounds = [*starts, len(keys)]
    if max(map(sub, bounds[1:], bounds), default=0) < RANGE_MIN:
        return []
    runs: dict[bytes, list[bytes]] = {}
    for prefix, start, stop in zip(prefixes, bounds, bounds[1:], strict=False):
        runs.setdefault(prefix, []).extend(keys[start:stop])
    return list(runs.values())


def _read_entries(
    tr: Transaction, flag: bytes, keys: list[bytes], runs: list[list[bytes]],
) -> tuple[list[bytes | None], bytes | None, list[Span], set[bytes]]:
    """Read the leased entries ``keys`` of a batch's completions and the dependencies'
    ``flag`` (``dependencies.settled`` reads it at the end of every batch): the entries'
    values (in ``keys``' order), the flag's, the spans and the keys they hold (below).

    ``runs``: the entries of each visit with ``RANGE_MIN`` or more (``_runs``); each is read
    by one range read from its first key to its last, whose read conflict covers every key
    a regular read of each would (and the keys between). Entries in it that are not the
    batch's (jobs of the visit still running) are read and left aside; a range cut by its
    limit has the keys past its last row read by key. The other entries are read by key,
    with the flag. One round trip on FoundationDB unless a batch has both.

    A span is a run's range that held exactly the run's entries: if each of them holds its
    completion's token, the range holds those entries and nothing else, and its read
    conflict fails the commit if that changes first; a batch of such completions clears the
    span with one range clear, the same effect as a clear of each entry.

    Measured (issue 10, callgrind, settle harness: 2,000 leased no-op jobs settled in
    batches of 32, instructions a job, by key against this): one tenant 67.8k -> 53.3k;
    visits of 8 jobs 71.5k -> 64.7k; of 4 (read by key) 74.2k -> 74.5k; of one job each
    79.4k -> 80.2k. A visit of 4 by a range read and span cost as much as by key (+0.4k); of
    one job, a statement a visit cost 25k more a job. In a transaction, 32 entries and the
    flag: 437k instructions by ``get_many``, 222k by a range read (SQLite finds one key, then
    steps; no key bound as a parameter; the rows still cost ~5k each in Python's sqlite3)."""
    ranged = [run for run in runs if len(run) >= RANGE_MIN]
    if not ranged:  # (visits of a few jobs each: every entry by its key, with the flag)
        values = tr.get_many([*keys, flag])
        flag_value = values.pop()
        return values, flag_value, [], set()
    keyed = [key for run in runs if len(run) < RANGE_MIN for key in run]
    ranges = [(min(run), max(run) + b"\x00", RANGE_SPARE + 2 * len(run)) for run in ranged]
    found: dict[bytes, bytes | None] = {}
    if keyed:
        values = tr.get_many([*keyed, flag])
        flag_value = values.pop()
        found.update(zip(keyed, values, strict=True))
        got = tr.get_ranges(ranges)
    else:  # (the flag as a range: one round trip on FoundationDB)
        got = tr.get_ranges([(flag, flag + b"\x00", 1), *ranges])
        first = got.pop(0)
        flag_value = first[0][1] if first else None
    spans: list[Span] = []
    spanned: set[bytes] = set()
    rest: list[bytes] = []
    for (begin, end, limit), rows, run in zip(ranges, got, ranged, strict=True):
        found.update(rows)
        if len(rows) == limit:  # (cut short: the rest of the run read key by key)
            last = rows[-1][0]
            rest += [key for key in run if key > last]
        elif len(rows) == len(run):
            spans.append((begin, end))
            spanned.update(run)
    if rest:
        found.update(zip(rest, tr.get_many(rest), strict=True))
    return list(map(found.get, keys)), flag_value, spans, spanned
