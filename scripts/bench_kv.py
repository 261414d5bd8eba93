"""Benchmarks of the key-value layer's embedded engine (SQLite, WAL, group commit).

Prints a table and writes JSON (--json, default bench-results/kv.json):

* commit: commits/s of small write transactions shaped like an enqueue (one point read, one
  ~100-byte write of a fresh key) from 1 thread and from 8 threads of one process (group commit:
  several threads' transactions made durable by one fsync), with synchronous=FULL (durable, the
  default) and NORMAL; with p50/p99 commit latency; next to the raw SQLite one-row commit rate
  on the same disk, the floor any layer over SQLite starts from;
* reads: point reads/s (random keys among 20,000, 1,000 reads per transaction) and range reads
  of 100 rows (rows/s);
* contention: 4 processes each running read-modify-write transactions on one of 10 hot keys
  (chosen at random), through ``on_error``: the share of commits aborted with 1020, and a check
  that the counters add up to the commits reported.

Each measurement runs for a fixed time (3 s; 0.75 s with --quick), on files under /tmp that are
removed afterwards. The three commit measurements of one setting run in turns of 0.5 s (0.25 s)
so a disk shared with other work treats them alike.

Run: ``python scripts/bench_kv.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quick_queue.kv.api import Transaction  # noqa: E402
from quick_queue.kv.errors import NOT_COMMITTED, KVError  # noqa: E402
from quick_queue.kv.sqlite_engine import SQLiteDatabase  # noqa: E402

PAYLOAD = b"p" * 100
READ_KEYS = 20_000
HOT_KEYS = 10
CONTENDERS = 4


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- commits -------------------------------------------------------------------------------------
class KVCommits:
    """Enqueue-shaped transactions from ``threads`` threads on one database."""

    def __init__(self, folder: str, synchronous: str, threads: int) -> None:
        path = os.path.join(folder, f"commit-{synchronous}-{threads}.db")
        self.db = SQLiteDatabase(path, synchronous=synchronous)
        self.synchronous = synchronous
        self.threads = threads
        self.commits = 0
        self.elapsed = 0.0
        self.latencies: list[float] = []
        self._next = [0] * threads

    @staticmethod
    def _enqueue_like(tr: Transaction, me: int, n: int) -> None:
        tr.get(b"t%02d/meta" % me)  # one point read (a tenant's pointer, an idempotency key)
        tr.set(b"t%02d/job/%09d" % (me, n), PAYLOAD)  # one new key

    def run(self, seconds: float) -> None:
        stop = threading.Event()
        start = threading.Barrier(self.threads + 1)
        latencies: list[list[float]] = [[] for _ in range(self.threads)]
        errors: list[BaseException] = []

        def worker(me: int) -> None:
            try:
                start.wait()
                mine = latencies[me]
                while not stop.is_set():
                    began = time.perf_counter()
                    self.db.transact(self._enqueue_like, me, self._next[me])
                    mine.append(time.perf_counter() - began)
                    self._next[me] += 1
            except BaseException as error:  # noqa: BLE001 - reported after the run
                errors.append(error)

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(self.threads)]
        for t in pool:
            t.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in pool:
            t.join()
        self.elapsed += time.perf_counter() - began
        if errors:
            raise errors[0]
        for per in latencies:
            self.commits += len(per)
            self.latencies.extend(per)

    def report(self) -> dict[str, Any]:
        self.db.close()
        return {
            "synchronous": self.synchronous,
            "threads": self.threads,
            "commits": self.commits,
            "seconds": round(self.elapsed, 3),
            "commits_per_s": round(self.commits / self.elapsed),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 3),
        }


class RawCommits:
    """One-row commits straight through sqlite3 (WAL), one thread: the floor for comparison."""

    def __init__(self, folder: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(
            os.path.join(folder, f"raw-{synchronous}.db"), isolation_level=None
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self.synchronous = synchronous
        self.commits = 0
        self.elapsed = 0.0
        self.latencies: list[float] = []

    def run(self, seconds: float) -> None:
        conn = self.conn
        began = time.perf_counter()
        deadline = began + seconds
        while True:
            tick = time.perf_counter()
            if tick >= deadline:
                break
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO kv (k, v) VALUES (?, ?)", (b"job/%09d" % self.commits, PAYLOAD)
            )
            conn.execute("COMMIT")
            self.latencies.append(time.perf_counter() - tick)
            self.commits += 1
        self.elapsed += time.perf_counter() - began

    def report(self) -> dict[str, Any]:
        self.conn.close()
        return {
            "synchronous": self.synchronous,
            "commits": self.commits,
            "seconds": round(self.elapsed, 3),
            "commits_per_s": round(self.commits / self.elapsed),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 3),
        }


def bench_commits(folder: str, synchronous: str, seconds: float, rounds: int) -> dict[str, Any]:
    """Raw SQLite, kv from 1 thread and kv from 8 threads, each run ``seconds`` in all, taken in
    turns of ``seconds / rounds`` so that all three meet the same disk (others share it)."""
    raw = RawCommits(folder, synchronous)
    one = KVCommits(folder, synchronous, 1)
    eight = KVCommits(folder, synchronous, 8)
    for _ in range(rounds):
        for measure in (raw, one, eight):
            measure.run(seconds / rounds)
    return {"raw": raw.report(), "1t": one.report(), "8t": eight.report()}


# -- reads -----------------------------------------------------------------------------------------
def preload(path: str) -> SQLiteDatabase:
    db = SQLiteDatabase(path)

    def fill(tr: Transaction, begin: int, end: int) -> None:
        for i in range(begin, end):
            tr.set(b"r/%08d" % i, PAYLOAD)

    for begin in range(0, READ_KEYS, 5_000):
        db.transact(fill, begin, begin + 5_000)
    return db


def bench_point_reads(db: SQLiteDatabase, seconds: float) -> dict[str, Any]:
    rng = random.Random(1)
    reads = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        tr = db.create_transaction()
        for _ in range(1_000):
            value = tr.get(b"r/%08d" % rng.randrange(READ_KEYS))
            assert value is not None
        tr.commit()
        reads += 1_000
    elapsed = time.perf_counter() - began
    return {"reads": reads, "reads_per_s": round(reads / elapsed), "per_transaction": 1_000}


def bench_range_reads(db: SQLiteDatabase, seconds: float, rows: int = 100) -> dict[str, Any]:
    rng = random.Random(2)
    ranges = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        tr = db.create_transaction()
        for _ in range(50):
            start = b"r/%08d" % rng.randrange(READ_KEYS - rows)
            got = tr.get_range(start, b"r0", limit=rows)
            assert len(got) == rows
        tr.commit()
        ranges += 50
    elapsed = time.perf_counter() - began
    return {
        "rows_per_range": rows,
        "ranges_per_s": round(ranges / elapsed),
        "rows_per_s": round(ranges * rows / elapsed),
    }


# -- contention --------------------------------------------------------------------------------
def contender(path: str, seconds: float, seed: int, start: Any, results: Any) -> None:
    db = SQLiteDatabase(path)
    rng = random.Random(seed)
    commits = aborts = other = 0
    start.wait(timeout=60)
    deadline = time.perf_counter() + seconds
    tr = db.create_transaction()
    while time.perf_counter() < deadline:
        key = b"hot/%02d" % rng.randrange(HOT_KEYS)
        try:
            value = int(tr.get(key) or b"0")
            tr.set(key, b"%d" % (value + 1))
            tr.commit()
            commits += 1
            tr.reset()
        except KVError as error:
            if error.code == NOT_COMMITTED:
                aborts += 1
            else:
                other += 1
            tr.on_error(error)
    db.close()
    results.put((commits, aborts, other))


def bench_contention(folder: str, seconds: float) -> dict[str, Any]:
    path = os.path.join(folder, "contention.db")
    SQLiteDatabase(path).close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(CONTENDERS + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=contender, args=(path, seconds, seed, start, results))
        for seed in range(CONTENDERS)
    ]
    for p in procs:
        p.start()
    start.wait(timeout=60)
    began = time.perf_counter()
    totals = [results.get(timeout=seconds + 60) for _ in procs]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join(timeout=30)
    commits = sum(t[0] for t in totals)
    aborts = sum(t[1] for t in totals)
    other = sum(t[2] for t in totals)
    with SQLiteDatabase(path) as db:
        stored = db.transact(lambda tr: tr.get_range(b"hot/", b"hot0"))
    counted = sum(int(v) for _, v in stored)
    return {
        "processes": CONTENDERS,
        "hot_keys": HOT_KEYS,
        "commits": commits,
        "aborts_1020": aborts,
        "other_errors": other,
        "abort_rate": round(aborts / max(1, commits + aborts), 4),
        "commits_per_s": round(commits / elapsed),
        "counters_match_commits": counted == commits,
    }


# -- driver --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.75 s per measurement")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "kv.json"))
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.75 if args.quick else 3.0)
    rounds = 3 if args.quick else 6

    folder = tempfile.mkdtemp(prefix="qq-bench-kv-", dir="/tmp")
    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str]] = []
    total_began = time.perf_counter()
    try:
        for synchronous in ("FULL", "NORMAL"):
            group = bench_commits(folder, synchronous, seconds, rounds)
            sync = synchronous.lower()
            raw = group["raw"]
            results[f"raw_sqlite_commit_{sync}"] = raw
            rows.append(
                (
                    f"raw sqlite3 one-row commit, {synchronous}, 1 thread",
                    f"{raw['commits_per_s']:,} commits/s",
                    f"the floor; p50 {raw['p50_ms']} ms, p99 {raw['p99_ms']} ms",
                )
            )
            for threads in (1, 8):
                r = group[f"{threads}t"]
                r["vs_raw"] = round(r["commits_per_s"] / raw["commits_per_s"], 3)
                results[f"commit_{sync}_{threads}t"] = r
                rows.append(
                    (
                        f"kv commit (1 read + 1 write), {synchronous}, {threads} thread"
                        + ("s" if threads > 1 else ""),
                        f"{r['commits_per_s']:,} commits/s",
                        f"{r['vs_raw']:.2f}x raw; p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms",
                    )
                )
        db = preload(os.path.join(folder, "reads.db"))
        try:
            r = bench_point_reads(db, seconds)
            results["point_reads"] = r
            rows.append(
                (
                    "point reads (1,000 per transaction)",
                    f"{r['reads_per_s']:,} reads/s",
                    f"{READ_KEYS:,} keys",
                )
            )
            r = bench_range_reads(db, seconds)
            results["range_reads_100"] = r
            rows.append(
                (
                    "range reads of 100 rows",
                    f"{r['rows_per_s']:,} rows/s",
                    f"{r['ranges_per_s']:,} ranges/s",
                )
            )
        finally:
            db.close()
        r = bench_contention(folder, seconds)
        results["contention"] = r
        rows.append(
            (
                f"contention: {CONTENDERS} processes, RMW on {HOT_KEYS} hot keys, FULL",
                f"{r['abort_rate'] * 100:.1f} % aborted (1020)",
                f"{r['commits_per_s']:,} commits/s, counters match: {r['counters_match_commits']}",
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    total = time.perf_counter() - total_began
    width = max(len(r[0]) for r in rows)
    print(f"quick_queue kv benchmark ({seconds:g} s per measurement, {total:.1f} s in all)")
    for name, figure, note in rows:
        print(f"  {name:<{width}}  {figure:>22}  {note}")

    report = {
        "benchmark": "kv",
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "seconds_per_measurement": seconds,
        "total_seconds": round(total, 1),
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
