"""How ``quick-queue`` shows things: human times and the rich tables of the read commands.

Everything here turns read-only views (``read_model.Overview``, ``ZoneView``, ``JobInfo``) into
rich renderables; nothing here reads the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from quick_queue.core.workers import WorkerInfo
from quick_queue.events import safe
from quick_queue.models import JobInfo
from quick_queue.read_model import Overview, ZoneView

#: counters shown first, in this order; any others follow alphabetically
TOPIC_COLUMNS = ("enqueued", "completed", "failed", "retried", "snoozed", "discarded", "dead",
                 "lease_expired", "cancelled", "revived")
STATE_STYLE = {"ready": "green", "scheduled": "cyan", "leased": "yellow", "dead": "red"}


# -- times -------------------------------------------------------------------------------------
def span(seconds: float) -> str:
    """A duration at a glance: ``0.4 s``, ``12 s``, ``1.5 min``, ``3 min``, ``2.5 h``, ``4 d``
    (one decimal below ten of a unit)."""
    s = abs(seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if s >= size:
            return f"{_num(s / size)} {unit}"
    return f"{_num(s)} s"


def _num(value: float) -> str:
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}".removesuffix(".0")


def relative(when: datetime | None, now: datetime) -> str:
    """``in 4.0 s`` / ``3 min ago`` / ``now`` (``-`` for no time)."""
    if when is None:
        return "-"
    delta = (when - now).total_seconds()
    if abs(delta) < 0.05:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def waited(since: datetime | None, now: datetime) -> str:
    return "-" if since is None else span(max(0.0, (now - since).total_seconds()))


def clock_time(when: datetime) -> str:
    return when.astimezone().strftime("%H:%M:%S")


# -- small helpers -----------------------------------------------------------------------------
def _table(*columns: str, right: Iterable[str] = (), wide: dict[str, int] | None = None
           ) -> Table:
    """A plain aligned table; ``reason``, ``when`` and ``lease ends`` wrap when the terminal is
    narrow, the other columns keep at least their header's width (or ``wide[column]``)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    right = set(right)
    wide = wide or {}
    for column in columns:
        wraps = column in ("reason", "when", "lease ends")
        table.add_column(column, justify="right" if column in right else "left",
                         no_wrap=not wraps,
                         min_width=None if wraps else max(len(column), wide.get(column, 0)))
    return table


def _titled(title: str, table: Table) -> Group:
    return Group(Text(), Text(title, style="bold"), table)


def shell_word(text: str) -> str:
    """``text`` as one shell word, for the commands the views suggest."""
    return shown(text) if re.fullmatch(r"[\w@%+=:,./-]+", text) else repr(shown(text))


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def attempts(job: JobInfo) -> str:
    """``2 of 4``: attempts made of the most a job may run (max_retries + 1)."""
    return f"{job.attempt} of {job.max_retries + 1}"


def to_json(data: Any) -> str:
    """Indented JSON; characters that steer a terminal are escaped even where JSON allows them
    raw (DEL, C1 controls, bidi overrides), so ``--json`` output is as safe to print as the
    tables."""
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
def shown(text: str | None) -> str:
    """``text`` safe for a terminal: control and format characters (ANSI escape sequences,
    NUL, newlines, bidi overrides) appear escaped (``\\x1b``, ``\\n``) instead of acting, as in
    the worker's log lines (``events.safe``). Tenant names, topics, errors and payloads come
    from whoever enqueued the job."""
    return "-" if text is None else safe(text)


def cell(text: str | None, style: str = "") -> Text:
    """A table cell of user data: escaped, and a ``Text`` so rich never reads ``[...]`` in it
    as markup."""
    return Text(shown(text), style=style)


# -- inspect (overview) ------------------------------------------------------------------------
def overview(view: Overview, url: str) -> RenderableType:
    now = view.now
    stats = view.stats
    busy = view.zones  # the deepest zones with jobs, deepest first
    idle = stats.zones - view.zones_with_jobs
    header = Text.assemble(
        ("queue ", "dim"), (shown(view.queue), "bold"), (" on ", "dim"), shown(url),
        (f"  at {clock_time(now)}", "dim"),
    )
    oldest = f"{span(stats.oldest_due_age)}" if stats.oldest_due_age is not None else "-"
    totals = Text.assemble(
        ("ready ", "dim"), (str(stats.ready), "green bold"),
        ("   scheduled ", "dim"), (str(stats.scheduled), "cyan bold"),
        ("   leased ", "dim"), (str(stats.leased), "yellow bold"),
        ("   dead ", "dim"), (str(stats.dead), "red bold" if stats.dead else "bold"),
        ("\nzones with jobs ", "dim"), (str(view.zones_with_jobs), "bold"),
        (f" (+{idle} idle, collected soon)" if idle else "", "dim"),
        ("   oldest due job waiting ", "dim"), (oldest, "bold"),
    )
    parts: list[RenderableType] = [header, totals]
    parts += [Text(shown(line), style="magenta") for line in view.flow.lines()]  # issue 13
    if view.zones_with_jobs:
        title = "Zones with jobs" + (
            f" (the {len(busy)} deepest of {view.zones_with_jobs})"
            if view.zones_with_jobs > len(busy) else ""
        )
        table = _table("tenant", "ready", "scheduled", "leased", "waiting", "next run",
                       "lease ends", right=("ready", "scheduled", "leased"))
        for zone in busy:
            table.add_row(*zone_row(zone, now))
        parts.append(_titled(title, table))
    else:
        parts += [Text(), Text("No jobs waiting or running.", style="dim")]
    if view.expiring:
        table = _table("tenant", "job", "topic", "attempt", "lease ends", wide={"job": 24})
        for job in view.expiring:
            expired = job.lease_expires_at is not None and job.lease_expires_at <= now
            ends = relative(job.lease_expires_at, now)
            table.add_row(cell(job.tenant), cell(job.job_id), cell(job.topic), attempts(job),
                          Text(ends + (" (worker gone? it runs again)" if expired else ""),
                               style="red" if expired else ""))
        parts.append(_titled(f"Leases ending within {span(view.lease_window)}", table))
    if stats.topics:
        parts.append(_titled("Per-topic counters (since the queue began)",
                             topics_table(stats.topics)))
    return Group(*parts)


def zone_row(zone: ZoneView, now: datetime) -> list[RenderableType]:
    lease = relative(zone.next_lease_expiry, now)
    if zone.expired:
        lease += f" ({zone.expired} expired)"
    return [
        cell(zone.tenant), str(zone.ready), str(zone.scheduled), str(zone.leased),
        waited(zone.due_since(now), now),
        relative(zone.next_scheduled, now), lease,
    ]


def topics_table(topics: dict[str, dict[str, int]]) -> Table:
    names = {name for counters in topics.values() for name in counters}
    columns = [c for c in TOPIC_COLUMNS if c in names] + sorted(names - set(TOPIC_COLUMNS))
    table = _table("topic", *(shown(c) for c in columns), right=columns)
    for topic in sorted(topics):
        counters = topics[topic]
        table.add_row(cell(topic), *(str(counters.get(c, 0)) for c in columns))
    return table


# -- inspect zone / job / dead -----------------------------------------------------------------
def zone_detail(zone: ZoneView, jobs: dict[str, list[JobInfo]], dead: int,
                now: datetime, limit: int) -> RenderableType:
    header = Text.assemble(("zone ", "dim"), (shown(zone.tenant), "bold"))
    totals = Text.assemble(
        ("ready ", "dim"), (str(zone.ready), "green bold"), ("   scheduled ", "dim"),
        (str(zone.scheduled), "cyan bold"), ("   leased ", "dim"),
        (str(zone.leased), "yellow bold"),
        ("   dead ", "dim"), (str(dead), "red bold" if dead else "bold"),
    )
    if zone.pointer_due is None:
        pointer = "no pointer (the zone has no live jobs)"
    elif zone.pointer_leased:
        pointer = "a consumer is picking jobs from it right now"
    elif not zone.jobs:
        pointer = f"empty; its pointer is collected {relative(zone.pointer_due, now)}"
    elif zone.pointer_due <= now:
        pointer = ("due, waiting for a consumer for "
                   f"{span((now - zone.pointer_due).total_seconds())}")
    else:
        pointer = f"next visit {relative(zone.pointer_due, now)}"
    parts: list[RenderableType] = [header, totals, Text("pointer: " + pointer, style="dim")]
    table = _table("job", "state", "topic", "prio", "attempt", "when",
                   right=("prio",), wide={"job": 24, "state": 9})
    errors: list[Text] = []
    listed = 0
    for state in ("ready", "scheduled", "leased"):
        for job in jobs.get(state, []):
            listed += 1
            if state == "leased":
                when = "lease ends " + relative(job.lease_expires_at, now)
            elif state == "ready":
                when = "due " + relative(job.due_at, now)
            else:
                when = relative(job.due_at, now)
            table.add_row(cell(job.job_id), _state(state), cell(job.topic), str(job.priority),
                          attempts(job), when)
            if job.last_error:
                errors.append(Text.assemble(shown(job.job_id) + "  ",
                                            (shown(job.last_error), "red")))
    if listed:
        total = zone.jobs
        more = f" (up to {limit} per state; {total} in all)" if listed < total else ""
        parts.append(_titled("Jobs: ready in run order, then scheduled, then leased" + more,
                             table))
    if errors:
        parts += [Text(), Text("Last errors", style="bold"), *errors]
    if dead:
        parts.append(Text(f"\n{dead} dead letter(s): quick-queue inspect dead --tenant "
                          f"{shell_word(zone.tenant)}", style="dim"))
    return Group(*parts)


def job_detail(job: JobInfo, now: datetime) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", justify="right")
    grid.add_column()

    def when(value: datetime | None) -> str:
        return "-" if value is None else f"{relative(value, now)}  ({value.isoformat()})"

    grid.add_row("job", cell(job.job_id, "bold"))
    grid.add_row("tenant", cell(job.tenant))
    grid.add_row("topic", cell(job.topic))
    grid.add_row("state", _state(job.state))
    grid.add_row("attempt", f"{attempts(job)} (max_retries {job.max_retries})")
    grid.add_row("priority", str(job.priority))
    if job.state in ("ready", "scheduled"):
        grid.add_row("due", when(job.due_at))
    if job.state == "leased":
        grid.add_row("lease ends", when(job.lease_expires_at))
    grid.add_row("enqueued", when(job.enqueued_at))
    grid.add_row("snoozes", str(job.snoozes))
    if job.key:
        grid.add_row("key", cell(job.key))
    if job.state == "dead":
        grid.add_row("dead because", cell(f"{job.dead_kind}: {job.reason}", "red"))
    elif job.last_error:
        grid.add_row("last error", cell(job.last_error, "red"))
    if job.progress is not None:
        grid.add_row("progress", cell(json.dumps(job.progress, ensure_ascii=False)))
    _kept_rows(grid, job, when)
    grid.add_row("payload", cell(json.dumps(job.payload, ensure_ascii=False)))
    return grid


def _kept_rows(grid: Table, job: JobInfo, when: Callable[[datetime | None], str]) -> None:
    """What a job that kept its result (``keep_result``) shows once it finished (H)."""
    if job.finished_at is None:
        return
    duration = "-" if job.duration is None else f"{job.duration:.3f} s"
    grid.add_row("finished", f"{when(job.finished_at)}  ran {duration}")
    grid.add_row("kept until", when(job.kept_until))
    if job.result_note:
        grid.add_row("result", cell(job.result_note, "yellow"))
    elif job.state == "completed":
        grid.add_row("result", cell(json.dumps(job.result, ensure_ascii=False)))


def dead_table(jobs: list[JobInfo], total: int, now: datetime) -> RenderableType:
    """Dead letters as a list: one aligned line per job, its reason wrapped underneath."""
    if not jobs:
        return Text("No dead letters.", style="dim")
    title = f"Dead letters ({len(jobs)} of {total})" if total > len(jobs) else (
        f"Dead letters ({total})"
    )
    tenant_w = max(len(shown(j.tenant)) for j in jobs)
    topic_w = max(len(shown(j.topic)) for j in jobs)
    kind_w = max(len(shown(j.dead_kind)) for j in jobs)
    lines: list[RenderableType] = [Text(title, style="bold")]
    for job in jobs:
        lines.append(Text.assemble(
            (shown(job.tenant).ljust(tenant_w), "bold"), "  ", shown(job.job_id), "  ",
            shown(job.topic).ljust(topic_w), "  ", (shown(job.dead_kind).ljust(kind_w), "red"),
            (f"  {job.attempt} attempt(s), enqueued {relative(job.enqueued_at, now)}", "dim"),
        ))
        lines.append(Padding(cell(" ".join((job.reason or "-").split())), (0, 0, 0, 4)))
    hint = ("retry one: quick-queue retry TENANT JOB_ID   all: quick-queue retry --all   "
            "delete one: quick-queue purge TENANT JOB_ID   all: quick-queue purge")
    lines += [Text(), Text(hint, style="dim")]
    return Group(*lines)


def workers_table(workers: list[WorkerInfo], now: float) -> RenderableType:
    """Live workers: where each runs, since when, its last heartbeat and the jobs it holds (so
    an operator can tell which worker holds a stuck job)."""
    if not workers:
        return Text("No live workers (none running, or every heartbeat has lapsed).",
                    style="dim")
    table = _table("worker", "host", "pid", "up", "heartbeat", "concurrency", "holding",
                   "jobs", right=("pid", "concurrency", "holding"))
    for w in workers:
        jobs = ", ".join(f"{shown(t)}/{shown(j)}" for t, j in w.jobs)
        if w.holding > len(w.jobs):
            jobs += f" (+{w.holding - len(w.jobs)} more)"
        table.add_row(cell(w.worker_id), cell(w.host), str(w.pid), span(now - w.started),
                      f"{span(max(0.0, now - w.heartbeat))} ago", str(w.concurrency),
                      str(w.holding), cell(jobs or "-"))
    return _titled(f"Live workers ({len(workers)})", table)


# -- worker ------------------------------------------------------------------------------------
class Counts(Protocol):
    """What a worker's summary line needs (the runtime's ``Summary`` has these fields)."""

    completed: int
    retried: int
    dead: int
    snoozed: int
    discarded: int
    released: int
    stale: int


def summary_line(summary: Counts) -> str:
    parts = [f"{summary.completed} completed", f"{summary.retried} retried",
             f"{summary.dead} dead", f"{summary.snoozed} snoozed"]
    for name in ("discarded", "released", "stale"):
        value = getattr(summary, name)
        if value:
            parts.append(f"{value} {name}")
    return ", ".join(parts)
