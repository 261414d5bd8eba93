"""A pytest plugin (``-p tests._skip_summary``, loaded by ``scripts/test``): skipped tests are
summed up as one line per reason at the end of the run, instead of one line per test, so a run
without a FoundationDB cluster ends in "73 skipped: no FoundationDB cluster ..." and pytest's
final count, not 73 near-identical lines. Use it with ``-rfE`` (failures and errors listed,
skips not)."""

from __future__ import annotations

from collections import Counter

import pytest
from _pytest.terminal import TerminalReporter


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(_reason(report) for report in skipped)
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}")
