"""The check of a rate limit held across worker processes (issue 13), on either engine.

The invariant is exact: leases are spaced by at least the interval (a generic cell rate
algorithm with no burst allowance), so no window of the stated length holds more than the
rate. Reaching the rate exactly is not: a job handed back for its turn is leased one dequeue
round trip after it (about 1 ms on SQLite, 2 to 10 ms on a loaded FoundationDB), and a late
lease is never made up (that would be the burst at a window's edge the issue forbids), so the
busiest second of 20/s holds 20 only when leases are under 2.6 ms late on average. What shows
that the limit, and nothing else, paced the leases is that they were typically one round trip
late: the median gap within half an interval (25 ms at 20/s: a loaded machine's round trip).
A limiter that spaces twice too far, or lets every other turn go by, fails that; a few
stragglers (a fresh process's clock catching up, a worker descheduled a moment) do not.
"""

from __future__ import annotations

import statistics
from itertools import pairwise


def busiest(leased: list[float], window: float) -> int:
    """The most leases in any window [t, t + window) (store times, seconds)."""
    return max(sum(1 for t in leased if start <= t < start + window - 1e-6) for start in leased)


def check_rate(leased: list[float], per_second: int) -> int:
    """Assert that ``leased`` (store times of every lease) held ``per_second`` and that the
    limit was exercised; returns the busiest second's count."""
    interval = 1.0 / per_second
    leased = sorted(leased)
    gaps = [b - a for a, b in pairwise(leased)]
    assert min(gaps) >= interval - 1e-6, gaps  # never closer than the rate allows ...
    most = busiest(leased, 1.0)
    assert most <= per_second  # ... so never more than the rate in a second
    assert statistics.median(gaps) <= 1.5 * interval, gaps  # and leased on their turn
    return most
