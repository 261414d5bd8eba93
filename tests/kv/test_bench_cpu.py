"""``scripts/bench.py``'s CPU figures (issue 10: worker CPU per no-op job by stage, CPU per
enqueue): the stages of a drain account for all of its CPU, on a handful of jobs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qq_bench", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["qq_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_drain_stages_add_up_to_the_drains_cpu(tmp_path: Path) -> None:
    bench = load_bench()
    stages = bench.drain_stages(str(tmp_path), 40)
    assert set(stages) == {"scan_dequeue", "handoff", "dispatch", "settle", "other", "total"}
    assert all(value >= 0 for value in stages.values())
    assert stages["scan_dequeue"] > 0 and stages["settle"] > 0 and stages["dispatch"] > 0
    parts = sum(value for key, value in stages.items() if key != "total")
    # threads that started before the drain (none here) would make the parts exceed the total
    assert parts <= stages["total"] * 1.05 + 1


def test_thread_cpu_restores_thread_run_and_counts_each_thread() -> None:
    bench = load_bench()
    import threading

    original = threading.Thread.run
    with bench.ThreadCPU(profile=True) as threads:
        worker = threading.Thread(target=lambda: sum(range(200_000)), name="quick_queue-x")
        worker.start()
        worker.join()
    assert threading.Thread.run is original
    assert threads.cpu["x"] > 0 and len(threads.profiles["x"]) == 1


def test_cpu_enqueue_reports_user_and_system_time(tmp_path: Path) -> None:
    figures = load_bench().cpu_enqueue(str(tmp_path), 20)
    assert figures["total"] > 0 and set(figures) == {"total", "user", "system"}


def test_a_shared_store_gets_a_queue_per_bench_deleted_afterwards(tmp_path: Path) -> None:
    """``--db``: the benches share one store (a test cluster) under names of their own."""
    bench = load_bench()
    shared = f"sqlite:///{tmp_path}/shared.db"
    target = bench.Target(str(tmp_path), shared)
    url, name = target.place("enq1")
    assert url == shared and name.startswith("bench-") and name.endswith("-enq1")
    db, queue = bench.open_queue(url, name)
    _, neighbour = bench.open_queue(url, "someone-elses")
    queue.enqueue("t", "noop", {"i": 1})
    neighbour.enqueue("t", "noop", {"i": 2})
    target.forget(db, name)
    root = queue.layout.root
    assert db.transact(lambda tr: tr.get_range(root, root + b"\xff")) == []
    assert neighbour.stats().ready == 1
    assert bench.Target(str(tmp_path)).place("enq1") == (f"sqlite:///{tmp_path}/enq1.db", "default")


def test_enqueue_many_stages_add_up_and_every_job_is_stored(tmp_path: Path) -> None:
    bench = load_bench()
    figures = bench.cpu_enqueue_many(str(tmp_path), batches=2, size=50)
    stages = ("build", "check", "write", "commit")
    assert set(figures) == {*stages, "total", "jobs_per_s"}
    assert all(figures[stage] >= 0 for stage in stages) and figures["jobs_per_s"] > 0
    assert abs(sum(figures[stage] for stage in stages) - figures["total"]) < 0.05
    db, queue = bench.open_queue(f"sqlite:///{tmp_path}/cpu-enqueue-many.db")
    try:
        assert queue.drain(concurrency=4).completed == 50 + 2 * 50  # the warm batch too
    finally:
        db.close()


def load_anatomy() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "qq_enqueue_anatomy", ROOT / "scripts" / "enqueue_anatomy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_enqueue_anatomy_times_each_statement_of_this_thread_once(tmp_path: Path) -> None:
    import sqlite3

    anatomy = load_anatomy()
    floor = anatomy.floor_round(str(tmp_path), 20)
    assert floor["statements"] == 3.0  # BEGIN, INSERT, COMMIT: each counted once
    ours = anatomy.quick_queue_round(str(tmp_path), 20)
    assert floor["statements"] < ours["statements"] < 10
    for figures in (floor, ours):
        assert 0 < figures["sql_cpu_us"] <= figures["cpu_us"]
        assert figures["sql_wall_us"] <= figures["wall_us"]
    assert sqlite3.connect is anatomy._connect  # the engine's connect is left as it was
