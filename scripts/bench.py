"""quick_queue benchmarks on the embedded engine (durable: synchronous=FULL).

Prints a table and writes JSON (--json, default bench-results/queue.json):

* cpu: CPU (not wall clock, so a busy machine does not skew it) per no-op job of an in-process
  ``drain(concurrency=16)``, all jobs of one tenant and 20 jobs per tenant (QuiCK's shape),
  split by stage in µs per job: scan_dequeue (the scanner: zone leases, dequeue
  transactions), handoff (passing a job scanner -> worker -> settler and the
  wake-ups), dispatch (a worker starting the handler, its outcome, the events), settle (the
  settler's transactions), other (keeper, checkpoints); and CPU per ``enqueue``, one per
  transaction (user and system: the fsync's kernel time is system time). Best of 3 rounds
  (other load only ever adds CPU) of 1,500 jobs and 500 enqueues (``--quick``: 2 of 600/300);
* drain: no-op jobs/s run by ``queue.run(concurrency=T, processes=P)`` worker processes, from
  the first completion to the last (start-up excluded), for several P x T;
* processes: no-op jobs/s over 1,000 tenants from one worker process and from two (16
  workers each), alternated for 4 rounds, and the ratio two/one;
* enqueue: jobs/s one per transaction from 1 thread and from 8 threads, and enqueue_many;
* latency: pick-up latency (start - enqueue) of jobs enqueued one at a time on an idle queue,
  and the idle worker's CPU use;
* scheduled: how late jobs enqueued with ``at=`` start after their time;
* races: zone-lease race aborts with C consumers over Z tenants;
* scale: drain rate and worker RSS with 1,000 queued jobs versus 1,000,000 over 100,000
  tenants (``--quick``: 100,000 over 10,000).

Run: ``python scripts/bench.py [--quick]
[--only cpu,drain,processes,enqueue,latency,scheduled,races,scale] [--json PATH] [--db URL]``.

``--db fdb:///path/to/fdb.cluster`` (any ``quick_queue.open`` URL) runs drain, enqueue and
latency a second time on that store, at small sizes (a shared test cluster should not notice),
each under a queue name of its own that is deleted afterwards; the JSON keeps those figures
under ``drain@db``, ``enqueue@db`` and ``latency@db`` beside the embedded engine's.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import quick_queue as qq  # noqa: E402
from quick_queue.core.admin import topic_counters  # noqa: E402
from quick_queue.live_workers import workers as live_workers  # noqa: E402

LATENCY_FILE = os.environ.get("QQ_BENCH_LATENCY_FILE", "")


@qq.job(topic="noop", max_retries=0)
class NoOp:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        # "t": enqueued at (pick-up latency); "due": its scheduled time (how late it started)
        since = payload.get("t", payload.get("due"))
        if LATENCY_FILE and since is not None:
            fd = os.open(LATENCY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{time.time() - since:.6f}\n".encode())
            os.close(fd)


def open_queue(
    url: str, name: str = "default", **settings: Any
) -> tuple[qq.Database, qq.JobQueue]:
    db = qq.open(url)
    return db, qq.JobQueue(db, name, jobs=[NoOp], **settings)


class Target:
    """Where a bench's queues live: a SQLite file per bench in ``tmp`` (the default), or one
    shared store (``--db``) with a queue name per bench, deleted when the bench is done."""

    def __init__(self, tmp: str, db_url: str | None = None) -> None:
        self.tmp, self.db_url = tmp, db_url

    def place(self, label: str) -> tuple[str, str]:
        """(URL, queue name) for the bench ``label``."""
        if self.db_url is None:
            return f"sqlite:///{self.tmp}/{label}.db", "default"
        return self.db_url, f"bench-{os.getpid()}-{label}"

    def forget(self, db: qq.Database, name: str) -> None:
        """Delete a shared store's bench queue (in pieces: one transaction holds 10 MB)."""
        if self.db_url is None:
            return
        root = qq.JobQueue(db, name).layout.root

        def clear(tr: Any) -> None:
            tr.clear_range(root, root + b"\xff")

        db.transact(clear)


def worker_main(url: str, concurrency: int, processes: int, name: str = "default") -> None:
    _, queue = open_queue(url, name)
    summary = queue.run(concurrency=concurrency, processes=processes)
    if summary is not None:  # one process: report what it counted
        print("SUMMARY " + json.dumps(dataclasses.asdict(summary)), flush=True)


def start_worker(url: str, concurrency: int, processes: int,
                 env: dict[str, str] | None = None,
                 capture: bool = False, name: str = "default") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", url, str(concurrency), str(processes), name],
        env={**os.environ, **(env or {})}, start_new_session=True,
        stdout=subprocess.PIPE if capture else None,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def completed(db: qq.Database, queue: qq.JobQueue) -> int:
    counters = db.transact(lambda tr: topic_counters(tr.snapshot, queue.layout))
    return counters.get("noop", {}).get("completed", 0)


def fill(queue: qq.JobQueue, n: int, tenants: int, batch: int = 1000,
         at: datetime | None = None) -> float:
    """Enqueue ``n`` no-op jobs over ``tenants`` (due at ``at``, or now); returns jobs/s."""
    t0 = time.perf_counter()
    when = {} if at is None else {"at": at}
    for start in range(0, n, batch):
        queue.enqueue_many([
            {"tenant": f"t{i % tenants:06d}", "topic": "noop", "payload": {"i": i}, **when}
            for i in range(start, min(n, start + batch))
        ])
    return n / (time.perf_counter() - t0)


def rss_kb(pid: int) -> int:
    total = 0
    pids = [pid]
    try:  # the supervisor and its children
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def timed_drain(url: str, n: int, tenants: int, concurrency: int, processes: int,
                stop_after: int | None = None, cap: float = 180.0,
                name: str = "default") -> dict[str, Any]:
    db, queue = open_queue(url, name)
    fill(queue, n, tenants)
    target = stop_after or n
    proc = start_worker(url, concurrency, processes, name=name)
    try:
        first_t = first_n = None
        deadline = time.monotonic() + cap
        peak_rss = 0
        while time.monotonic() < deadline:
            done = completed(db, queue)
            now = time.perf_counter()
            if first_t is None and done > 0:
                first_t, first_n = now, done
            peak_rss = max(peak_rss, rss_kb(proc.pid))
            if done >= target:
                break
            time.sleep(0.02)
        else:
            return {"status": "timeout", "completed": completed(db, queue)}
        assert first_t is not None and first_n is not None
        rate = (done - first_n) / max(1e-9, now - first_t)
        return {"jobs_per_s": round(rate), "completed": done, "worker_rss_kb": peak_rss}
    finally:
        stop_worker(proc)
        db.close()


def bench_drain(target: Target, quick: bool) -> dict[str, Any]:
    n = 2_000 if target.db_url else 5_000 if quick else 20_000
    out = {}
    for processes, concurrency in ((1, 16), (2, 8), (2, 16)):
        url, name = target.place(f"drain-{processes}x{concurrency}")
        try:
            result = timed_drain(url, n, 1, concurrency, processes, name=name)
        finally:
            with qq.open(url) as db:
                target.forget(db, name)
        out[f"{processes}x{concurrency}"] = result
        print(f"  drain {processes} proc x {concurrency}: {result}", flush=True)
    return {"n": n, "tenants": 1, "configs": out}


def bench_processes(target: Target, quick: bool) -> dict[str, Any]:
    """How far a second worker process takes a drain over 1,000 tenants (QuiCK's shape; the
    design's target: two processes at least 1.7x one): one process x 16 and two x 16,
    alternated for several rounds, because this machine's speed swings more between minutes
    than the figure does (issue 10: the same code gave 1.16-1.81x in single harness runs)."""
    n, tenants = (5_000, 250) if quick else (20_000, 1_000)
    rounds = 2 if quick else 4
    rates: dict[int, list[int]] = {1: [], 2: []}
    for round_ in range(rounds):
        for processes in (1, 2):
            url, name = target.place(f"processes-{processes}-{round_}")  # (a fresh store each)
            try:
                result = timed_drain(url, n, tenants, 16, processes, name=name)
            finally:
                with qq.open(url) as db:
                    target.forget(db, name)
            rates[processes].append(int(result.get("jobs_per_s", 0)))
    ratios = [round(two / one, 2) for one, two in zip(rates[1], rates[2], strict=True) if one]
    out = {"n": n, "tenants": tenants, "one_process_x16": rates[1],
           "two_processes_x16": rates[2], "ratio_by_round": ratios,
           "ratio_of_medians": round(statistics.median(rates[2]) / statistics.median(rates[1]), 2)
           if all(rates[1]) else None}
    print(f"  processes: {out}", flush=True)
    return out


def bench_enqueue(target: Target, quick: bool) -> dict[str, Any]:
    n = 1_000 if quick else 5_000
    out: dict[str, Any] = {}
    db, queue = open_queue(*target.place("enq1"))
    t0 = time.perf_counter()
    for i in range(n):
        queue.enqueue("default", "noop", {"i": i})
    out["one_per_txn_1_thread"] = round(n / (time.perf_counter() - t0))
    target.forget(db, queue.layout.name)
    db, queue = open_queue(*target.place("enq8"))

    def produce(k: int) -> None:
        for i in range(n // 8):
            queue.enqueue(f"t{k}", "noop", {"i": i})

    t0 = time.perf_counter()
    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["one_per_txn_8_threads"] = round(n // 8 * 8 / (time.perf_counter() - t0))
    target.forget(db, queue.layout.name)
    db, queue = open_queue(*target.place("enqb"))
    out["enqueue_many_batch_1000"] = round(fill(queue, n * 10, 1))
    target.forget(db, queue.layout.name)
    print(f"  enqueue: {out}", flush=True)
    return out


def collect_samples(path: str, count: int, cap: float = 30.0) -> list[float]:
    """The milliseconds the handlers wrote to ``path``, once ``count`` are there (or at cap)."""
    deadline = time.monotonic() + cap
    samples: list[float] = []
    while time.monotonic() < deadline:
        try:
            samples = [float(x) * 1000 for x in Path(path).read_text().split()]
        except FileNotFoundError:
            samples = []
        if len(samples) >= count:
            break
        time.sleep(0.05)
    return samples


def percentile(ordered: list[float], p: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)


def bench_latency(target: Target, quick: bool) -> dict[str, Any]:
    count = 50 if quick else 200
    url, name = target.place("latency")
    db, queue = open_queue(url, name)
    lat_file = f"{target.tmp}/latency-{name}.txt"
    proc = start_worker(url, 16, 1, env={"QQ_BENCH_LATENCY_FILE": lat_file}, name=name)
    try:
        queue.enqueue("warm", "noop", {"t": time.time()})
        time.sleep(1.0)
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(2.0)
        idle_cpu = (_cpu_seconds(proc.pid) - cpu0) / 2.0
        Path(lat_file).unlink(missing_ok=True)
        for i in range(count):
            queue.enqueue(f"t{i % 10}", "noop", {"t": time.time()})
            time.sleep(0.02)
        samples = collect_samples(lat_file, count)
    finally:
        stop_worker(proc)
        target.forget(db, name)
        db.close()
    samples.sort()
    out = {"n": len(samples), "p50_ms": percentile(samples, 0.5),
           "p95_ms": percentile(samples, 0.95), "p99_ms": percentile(samples, 0.99),
           "max_ms": round(samples[-1], 2), "idle_worker_cpu_pct": round(idle_cpu * 100, 2)}
    print(f"  latency: {out}", flush=True)
    return out


def bench_scheduled(target: Target, quick: bool) -> dict[str, Any]:
    """Jobs enqueued with at= a moment 0.3-0.5 s ahead, on an idle worker: start - due time."""
    count = 20 if quick else 100
    tmp = target.tmp
    url = f"sqlite:///{tmp}/scheduled.db"
    db, queue = open_queue(url)
    lat_file = f"{tmp}/scheduled.txt"
    proc = start_worker(url, 16, 1, env={"QQ_BENCH_LATENCY_FILE": lat_file})
    try:
        time.sleep(1.0)
        for i in range(count):
            due = time.time() + 0.3 + (i % 5) * 0.05
            queue.enqueue(f"t{i % 10}", "noop", {"due": due},
                          at=datetime.fromtimestamp(due, tz=UTC))
            time.sleep(0.03)
        samples = collect_samples(lat_file, count)
    finally:
        stop_worker(proc)
        db.close()
    samples.sort()
    out = {"n": len(samples), "early": sum(1 for s in samples if s < 0),
           "p50_ms_late": percentile(samples, 0.5), "p99_ms_late": percentile(samples, 0.99),
           "max_ms_late": round(samples[-1], 2)}
    print(f"  scheduled: {out}", flush=True)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


DUE_AFTER = 2.0  # seconds from the races bench's enqueue to the jobs' time (the fill takes ~0.1 s)
RACE_ROUNDS = 3  # drains of the races bench (``bench_races``), each on a fresh store


def bench_races(target: Target, quick: bool) -> dict[str, Any]:
    """16 consumer processes (one job at a time each) over 1,000 tenants: how many zone visits
    end in a lost race (a 1020 on the visit's commit), in ``RACE_ROUNDS`` drains on fresh
    stores (one with ``--quick``): each round's share and the share of all rounds together.
    One drain's share swung 2-6 % between runs of the same code (issue 10, eleventh pass).

    The consumers are started on an empty queue; once all 16 show in the live-worker records,
    the jobs are enqueued for one moment ``DUE_AFTER`` seconds later, when every zone falls
    due at once: the figure is that of 16 consumers sharing the tenants (DESIGN.md §7). Before
    (issue 10, ninth pass and earlier) the jobs were enqueued first, and the figure was mostly
    that of 16 processes starting one after another on 2 cores while the first ones drained;
    jobs enqueued while the consumers run race with the producer's batches instead (each one
    writes the pointer of every zone it makes non-empty)."""
    rounds = [race_round(target, quick, n) for n in range(1 if quick else RACE_ROUNDS)]
    races = sum(r["lease_races"] for r in rounds)
    visits = sum(r["zone_visits"] for r in rounds)
    out = {"rounds": rounds, "abort_rate_by_round": [r["abort_rate"] for r in rounds],
           "abort_rate": round(races / max(1, races + visits), 4)}
    print(f"  races: abort rate {out['abort_rate']} over {len(rounds)} rounds "
          f"{out['abort_rate_by_round']}", flush=True)
    return out


def race_round(target: Target, quick: bool, number: int) -> dict[str, Any]:
    """One drain of ``bench_races``, on a store of its own."""
    consumers, tenants = 16, 1000
    per_tenant = 2 if quick else 5
    url = f"sqlite:///{target.tmp}/races-{number}.db"
    db, queue = open_queue(url)
    procs = [start_worker(url, 1, 1, capture=True) for _ in range(consumers)]
    try:
        deadline = time.monotonic() + 120
        while len(live_workers(queue)) < consumers and time.monotonic() < deadline:
            time.sleep(0.05)
        joined = len(live_workers(queue))
        fill(queue, tenants * per_tenant, tenants,
             at=datetime.fromtimestamp(db.store_time() + DUE_AFTER, UTC))
        time.sleep(max(0.0, DUE_AFTER - 0.5))
        t0 = time.perf_counter()
        deadline = time.monotonic() + 300
        while completed(db, queue) < tenants * per_tenant and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
    finally:
        summaries = []
        for proc in procs:
            stop_worker(proc)
            assert proc.stdout is not None
            for line in proc.stdout.read().decode().splitlines():
                if line.startswith("SUMMARY "):
                    summaries.append(json.loads(line[8:]))
    races = sum(s["lease_races"] for s in summaries)
    visits = sum(s["zone_visits"] for s in summaries)
    out = {"consumer_processes": consumers, "joined_before_fill": joined, "tenants": tenants,
           "jobs": completed(db, queue), "zone_visits": visits, "lease_races": races,
           "abort_rate": round(races / max(1, races + visits), 4),
           "jobs_per_s": round(completed(db, queue) / elapsed)}
    db.close()
    print(f"  races, round {number + 1}: {out}", flush=True)
    return out


def bench_scale(target: Target, quick: bool) -> dict[str, Any]:
    tmp = target.tmp
    big, big_tenants = (100_000, 10_000) if quick else (1_000_000, 100_000)
    sample = 5_000 if quick else 20_000
    # The same shape at both sizes (jobs per tenant, so jobs per zone visit): what changes is
    # only how much is queued. The small queue holds the measured sample plus 1,000.
    per_tenant = big // big_tenants
    small_n = 1_000 + sample
    small = timed_drain(f"sqlite:///{tmp}/scale-small.db", small_n, small_n // per_tenant, 16, 2,
                        stop_after=sample)
    print(f"  scale small: {small}", flush=True)
    large = timed_drain(f"sqlite:///{tmp}/scale-big.db", big, big_tenants, 16, 2,
                        stop_after=sample, cap=300)
    print(f"  scale big: {large}", flush=True)
    ratio = None
    if "jobs_per_s" in small and "jobs_per_s" in large:
        ratio = round(large["jobs_per_s"] / max(1, small["jobs_per_s"]), 3)
    return {"small": {"queued": small_n, "tenants": small_n // per_tenant, **small},
            "large": {"queued": big, "tenants": big_tenants, **large},
            "large_over_small": ratio}


# -- CPU per operation (not wall clock: robust on a busy machine) ----------------------------
# Stages of a drained job, by the thread that spends the CPU and, for the hand-offs between
# threads, by the functions that pass a job on (split out with a per-thread profile).
HANDOFF_FUNCS = {  # (file suffix, function): CPU counted as hand-off, wherever it runs
    ("consumer/workers.py", "accept_many"),  # scanner -> worker queue
    ("~", "<method 'get' of '_queue.SimpleQueue' objects>"),  # a worker wakes with a job
    ("consumer/settler.py", "submit"),  # worker -> settler (a job that never ran)
    ("consumer/settler.py", "submit_claimed"),  # worker -> settler
    ("threading.py", "wait"),  # the settler wakes with outcomes
}
THREAD_STAGE = {"main": "scan_dequeue", "worker": "dispatch", "settler": "settle"}


class ThreadCPU:
    """CPU seconds of every thread started while installed, summed by thread name (the part
    after ``quick_queue-``), optionally with a ``cProfile`` of each thread."""

    def __init__(self, profile: bool) -> None:
        self.cpu: dict[str, float] = {}
        self.profiles: dict[str, list[cProfile.Profile]] = {}
        self.profile = profile
        self._lock = threading.Lock()
        self._orig = threading.Thread.run

    def _record(self, name: str, cpu: float, prof: cProfile.Profile | None) -> None:
        with self._lock:
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu
            if prof is not None:
                self.profiles.setdefault(name, []).append(prof)

    def __enter__(self) -> ThreadCPU:
        me, orig = self, self._orig

        def run(thread: threading.Thread) -> None:
            prof = cProfile.Profile(time.thread_time) if me.profile else None
            if prof is not None:
                prof.enable()
            try:
                orig(thread)
            finally:
                if prof is not None:
                    prof.disable()
                name = thread.name.removeprefix("quick_queue-")
                me._record(name, time.thread_time(), prof)

        threading.Thread.run = run  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.run = self._orig  # type: ignore[method-assign]


def _handoff_share(profiles: list[cProfile.Profile]) -> float:
    """The fraction of these profiles' CPU spent in HANDOFF_FUNCS (their callees included)."""
    total = handoff = 0.0
    for prof in profiles:
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        for (path, _line, func), (_cc, _nc, tt, ct, _callers) in stats.items():
            total += tt
            if any(path.endswith(f) and func == name for f, name in HANDOFF_FUNCS):
                handoff += ct
    return handoff / total if total else 0.0


def cpu_drain(
    tmp: str, n: int, profile: bool, tenants: int = 1
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Drain ``n`` no-op jobs of ``tenants`` tenants in this process: (CPU s, CPU s by
    thread, hand-off share of each thread's CPU)."""
    db, queue = open_queue(f"sqlite:///{tmp}/cpu-drain-{int(profile)}-{tenants}.db")
    fill(queue, n, tenants)
    main_prof = cProfile.Profile(time.thread_time) if profile else None
    with ThreadCPU(profile) as threads:
        cpu0, main0 = time.process_time(), time.thread_time()
        if main_prof is not None:
            main_prof.enable()
        summary = queue.drain(concurrency=16)
        if main_prof is not None:
            main_prof.disable()
        cpu = time.process_time() - cpu0
        threads.cpu["main"] = time.thread_time() - main0
    db.close()
    if summary.completed != n:
        raise SystemExit(f"cpu bench: drained {summary.completed} of {n} jobs")
    if main_prof is not None:
        threads.profiles["main"] = [main_prof]
    shares = {name: _handoff_share(profs) for name, profs in threads.profiles.items()}
    return cpu, threads.cpu, shares


def drain_stages(tmp: str, n: int, tenants: int = 1) -> dict[str, float]:
    """µs of CPU per job by stage: thread CPU from an unprofiled drain, the hand-off part of
    each thread's CPU from a second, profiled drain (a fraction: the profiler slows code)."""
    cpu, by_thread, _ = cpu_drain(tmp, n, profile=False, tenants=tenants)
    _, _, shares = cpu_drain(tmp, n, profile=True, tenants=tenants)
    print("    hand-off share of each thread's CPU: "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(shares.items())), flush=True)
    stages = {"scan_dequeue": 0.0, "handoff": 0.0, "dispatch": 0.0, "settle": 0.0, "other": 0.0}
    for name, seconds in by_thread.items():
        stage = THREAD_STAGE.get(name, "other")
        share = shares.get(name, 0.0) if stage != "other" else 0.0
        stages["handoff"] += seconds * share
        stages[stage] += seconds * (1 - share)
    out = {stage: round(seconds / n * 1e6, 1) for stage, seconds in stages.items()}
    out["total"] = round(cpu / n * 1e6, 1)
    return out


def cpu_enqueue(tmp: str, n: int) -> dict[str, float]:
    """µs of CPU per ``enqueue`` (one per transaction, this thread; user and system)."""
    db, queue = open_queue(f"sqlite:///{tmp}/cpu-enqueue.db")
    for i in range(50):  # warm: connections, statement cache, clock anchor
        queue.enqueue("default", "noop", {"i": i})
    t0, cpu0 = os.times(), time.process_time()
    for i in range(n):
        queue.enqueue("default", "noop", {"i": i})
    cpu, t1 = time.process_time() - cpu0, os.times()
    db.close()
    return {"total": round(cpu / n * 1e6, 1),
            "user": round((t1.user - t0.user) / n * 1e6, 1),
            "system": round((t1.system - t0.system) / n * 1e6, 1)}


def cpu_enqueue_many(tmp: str, batches: int, size: int = 1_000) -> dict[str, float]:
    """µs of CPU per job of ``enqueue_many`` (batches of ``size`` no-op jobs ``{"i": i}``, one
    tenant, one transaction a batch, this thread), split into building the items, checking
    them (``new_jobs``), writing them into the transaction and its commit, and the jobs per
    second of wall time all included (the peers harness's enqueue_many figure)."""
    from quick_queue.core.enqueue import enqueue_many
    from quick_queue.models import to_us

    db, queue = open_queue(f"sqlite:///{tmp}/cpu-enqueue-many.db")
    context = queue.context
    slack = to_us(context.settings.pointer_slack)
    queue.enqueue_many([("default", "noop", {"i": i}) for i in range(size)])  # warm
    spent = dict.fromkeys(("build", "check", "write", "commit"), 0.0)
    wall = 0.0
    for b in range(batches):
        w0, c0 = time.perf_counter(), time.process_time()
        items = [{"tenant": "default", "topic": "noop", "payload": {"i": i}}
                 for i in range(b * size, (b + 1) * size)]
        c1 = time.process_time()
        now = context.clock.now()
        news = queue._producer().new_jobs(items, now)
        c2 = time.process_time()
        tr = db.create_transaction()
        enqueue_many(tr, context.layout, news, to_us(now), slack)
        db.notify_change(tr)
        c3 = time.process_time()
        tr.commit()
        c4, wall = time.process_time(), wall + time.perf_counter() - w0
        for stage, cpu in zip(spent, (c1 - c0, c2 - c1, c3 - c2, c4 - c3), strict=True):
            spent[stage] += cpu
    db.close()
    jobs = batches * size
    out = {stage: round(cpu / jobs * 1e6, 2) for stage, cpu in spent.items()}
    out["total"] = round(sum(spent.values()) / jobs * 1e6, 2)
    out["jobs_per_s"] = round(jobs / wall)
    return out


def bench_cpu(target: Target, quick: bool) -> dict[str, Any]:
    """Worker CPU per no-op job by stage, with every job of one tenant and with 20 jobs per
    tenant (QuiCK's shape: a zone visit per 20 jobs), CPU per enqueue and per enqueue_many
    job; each the best of ``rounds`` runs (other processes on the machine only ever add to a
    figure)."""
    tmp = target.tmp
    n, n_enqueue, rounds = (600, 300, 2) if quick else (1_500, 500, 3)
    out: dict[str, Any] = {"jobs": n, "enqueues": n_enqueue, "rounds": rounds}
    for label, tenants in (("drain_1_tenant", 1), ("drain_20_jobs_per_tenant", n // 20)):
        runs = [drain_stages(tmp, n, tenants) for _ in range(rounds)]
        drain = min(runs, key=lambda d: d["total"])
        stages = ", ".join(f"{k} {v}" for k, v in drain.items() if k != "total")
        print(f"  worker CPU per no-op job, {tenants} tenant(s): {drain['total']} µs "
              f"({stages})", flush=True)
        out[label] = {"tenants": tenants, "us_per_job": drain, "all_rounds": runs}
    enqueues = [cpu_enqueue(tmp, n_enqueue) for _ in range(rounds)]
    enqueue = min(enqueues, key=lambda e: e["total"])
    print(f"  CPU per enqueue (1 per transaction): {enqueue['total']} µs "
          f"(user {enqueue['user']}, system {enqueue['system']})", flush=True)
    out["enqueue_us_per_op"] = enqueue
    out["all_enqueues"] = enqueues
    batches = 5 if quick else 20
    manys = [cpu_enqueue_many(tmp, batches) for _ in range(rounds)]
    many = min(manys, key=lambda m: m["total"])
    stages = ", ".join(f"{k} {many[k]}" for k in ("build", "check", "write", "commit"))
    print(f"  CPU per enqueue_many job (batches of 1,000): {many['total']} µs ({stages}); "
          f"{many['jobs_per_s']} jobs/s", flush=True)
    out["enqueue_many_us_per_job"] = many
    out["all_enqueue_manys"] = manys
    return out

# What --db runs on the other store too (at the --quick sizes).
ON_DB = ("drain", "enqueue", "latency")
BENCHES = {"cpu": bench_cpu, "drain": bench_drain, "processes": bench_processes,
           "enqueue": bench_enqueue,
           "latency": bench_latency,
           "scheduled": bench_scheduled,
           "races": bench_races, "scale": bench_scale}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", default=",".join(BENCHES),
                        help=f"comma-separated, some of: {','.join(BENCHES)}")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "queue.json"))
    parser.add_argument("--db", help="also run drain, enqueue and latency on this store "
                        "(e.g. fdb:///etc/foundationdb/fdb.cluster), at the --quick sizes")
    args = parser.parse_args()
    unknown = [name for name in args.only.split(",") if name not in BENCHES]
    if unknown:
        parser.error(f"--only: unknown bench(es) {', '.join(map(repr, unknown))}; "
                     f"choose from {', '.join(BENCHES)}")
    results: dict[str, Any] = {"quick": args.quick, "python": sys.version.split()[0],
                               "cpus": os.cpu_count(), "started": time.strftime("%FT%T%z")}
    with tempfile.TemporaryDirectory(prefix="qq-bench-") as tmp:
        for name in args.only.split(","):
            print(f"{name}:", flush=True)
            results[name] = BENCHES[name](Target(tmp), args.quick)
        if args.db:
            results["db"] = args.db
            for name in (n for n in args.only.split(",") if n in ON_DB):
                print(f"{name} on {args.db}:", flush=True)
                results[f"{name}@db"] = BENCHES[name](Target(tmp, args.db), True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
