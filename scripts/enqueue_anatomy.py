"""Where the time of one ``enqueue`` (one job, one transaction, synchronous=FULL) goes, beside a
minimal SQLite queue's insert (the "floor" of issue 10: one row, one transaction).

For each, per operation: wall time, CPU time (user + system, this process), and the part of
both spent inside SQLite's statements (``execute``: parsing aside, the B-tree work, the WAL
writes and, at COMMIT, the fsync's wait): what is left of the CPU is Python's. The statements
are timed by a connection class given to the engine's ``sqlite3.connect`` here (a measuring
tool's patch: the engine is unchanged), in this thread only (the engine's checkpoint thread is
not counted). Best of ``--rounds`` rounds by CPU (other load only ever adds to it).

Run: ``python scripts/enqueue_anatomy.py [--ops 2000] [--rounds 3] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import quick_queue as qq  # noqa: E402
from quick_queue.kv.sqlite_engine import PAGE_SIZE  # noqa: E402

MAIN = threading.get_ident()


class Spent:
    """Time spent inside SQLite's statements by the main thread."""

    cpu = 0.0
    wall = 0.0
    statements = 0


def timed(execute: Any, sql: str, parameters: Any) -> Any:
    """``execute(sql, parameters)``, its CPU and wall time and the statement counted in
    ``Spent`` when the main thread runs it."""
    if threading.get_ident() != MAIN:
        return execute(sql, parameters)
    c0, w0 = time.thread_time(), time.perf_counter()
    try:
        return execute(sql, parameters)
    finally:
        Spent.cpu += time.thread_time() - c0
        Spent.wall += time.perf_counter() - w0
        Spent.statements += 1


class TimedCursor(sqlite3.Cursor):
    """The same timing for statements run on a cursor the engine keeps (its writer's and
    each read connection's: ``execute`` on a connection makes a cursor each time)."""

    def execute(self, sql: str, parameters: Any = (), /) -> TimedCursor:
        return timed(super().execute, sql, parameters)  # type: ignore[no-any-return]


class TimedConnection(sqlite3.Connection):
    def cursor(self, factory: Any = TimedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return timed(super().execute, sql, parameters)  # type: ignore[no-any-return]


def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    return _connect(*args, **kwargs, factory=TimedConnection)


_connect = sqlite3.connect


def measure(ops: int, step: Any) -> dict[str, float]:
    Spent.cpu = Spent.wall = 0.0
    Spent.statements = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(ops):
        step(i)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    per = 1e6 / ops
    return {
        "wall_us": round(wall * per, 1), "cpu_us": round(cpu * per, 1),
        "sql_cpu_us": round(Spent.cpu * per, 1), "sql_wall_us": round(Spent.wall * per, 1),
        "python_cpu_us": round((cpu - Spent.cpu) * per, 1),
        "statements": round(Spent.statements / ops, 2),
    }


@qq.job(topic="noop", max_retries=0)
class NoOp:
    def perform(self, payload: dict[str, Any], meta: qq.JobMeta) -> None:
        return None


def quick_queue_round(folder: str, ops: int) -> dict[str, float]:
    sqlite3.connect = timed_connect  # type: ignore[assignment]
    try:
        db = qq.open(f"sqlite:///{folder}/qq-{time.monotonic_ns()}.db")
    finally:
        sqlite3.connect = _connect
    queue = qq.JobQueue(db, jobs=[NoOp])
    for i in range(50):  # warm: connections, statement cache, clock anchor
        queue.enqueue("default", "noop", {"i": i})
    try:
        return measure(ops, lambda i: queue.enqueue("default", "noop", {"i": i}))
    finally:
        db.close()


def floor_round(folder: str, ops: int) -> dict[str, float]:
    conn = timed_connect(f"{folder}/floor-{time.monotonic_ns()}.db", isolation_level=None)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT, status TEXT)")

    def insert(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO jobs (payload, status) VALUES (?, 'queued')",
                     (json.dumps({"i": i}),))
        conn.execute("COMMIT")

    for i in range(50):
        insert(i)
    try:
        return measure(ops, insert)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="bench-results/enqueue-anatomy.json")
    args = parser.parse_args()
    if args.ops < 1 or args.rounds < 1:
        parser.error("--ops and --rounds must be at least 1")
    out: dict[str, Any] = {"ops": args.ops, "rounds": args.rounds}
    runs = {"floor": floor_round, "enqueue": quick_queue_round}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):  # alternated, so that both see the same disk and load
            for name, run in runs.items():
                rounds[name].append(run(folder, args.ops))
    for name, done in rounds.items():
        best = min(done, key=lambda r: r["cpu_us"])
        out[name] = {"best": best, "all_rounds": done}
        print(f"{name:8} " + ", ".join(f"{k} {v}" for k, v in best.items()), flush=True)
    floor, ours = out["floor"]["best"], out["enqueue"]["best"]
    out["enqueue_wall_vs_floor"] = round(floor["wall_us"] / ours["wall_us"], 3)
    print(f"enqueue at {out['enqueue_wall_vs_floor']:.0%} of the floor's rate (wall time); "
          f"Python {ours['python_cpu_us']} µs against the floor's {floor['python_cpu_us']}, "
          f"SQLite {ours['sql_cpu_us']} µs CPU against {floor['sql_cpu_us']}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
