"""The public surface of ``quick_queue`` is locked: changing it must be deliberate."""

from __future__ import annotations

import importlib
import inspect
import threading

import pytest

import quick_queue as qq

EXPECTED_ALL = [
    "ArgumentTypeError",
    "ClientLibraryMissing",
    "Clock",
    "ConfigurationError",
    "Database",
    "Discard",
    "Error",
    "ForeignDatabase",
    "HandlerError",
    "InvalidArgument",
    "JobCancelled",
    "JobDead",
    "JobDiscarded",
    "JobFailed",
    "JobInfo",
    "JobMeta",
    "JobNotFound",
    "JobQueue",
    "KVError",
    "ManualClock",
    "Ok",
    "PayloadError",
    "QueueStats",
    "QuickQueueError",
    "ResultNotKept",
    "ResultTimeout",
    "Settings",
    "Snooze",
    "StorageError",
    "Summary",
    "SystemClock",
    "Transaction",
    "UnknownSetting",
    "UnknownTopicWarning",
    "UnreadableRecord",
    "__version__",
    "job",
    "open",
    "transactional",
]


def test_all_is_exactly_the_locked_sorted_list() -> None:
    assert sorted(EXPECTED_ALL) == EXPECTED_ALL
    assert qq.__all__ == EXPECTED_ALL


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_each_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("quick_queue")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from quick_queue import {name}", namespace)  # the form users write
    assert namespace[name] is getattr(module, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from quick_queue import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED_ALL


def test_version_is_a_string() -> None:
    assert isinstance(qq.__version__, str) and qq.__version__.count(".") >= 1


def test_error_hierarchy() -> None:
    for name in EXPECTED_ALL:
        obj = getattr(qq, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, qq.QuickQueueError), name
    assert issubclass(qq.PayloadError, ValueError)
    assert issubclass(qq.ConfigurationError, qq.QuickQueueError)
    assert issubclass(qq.ConfigurationError, ValueError)
    assert issubclass(qq.StorageError, qq.KVError)
    assert issubclass(qq.ClientLibraryMissing, qq.KVError)
    assert hasattr(qq.KVError(1020, "x"), "code")


def _params(fn: object) -> list[tuple[str, str]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind.name) for p in sig.parameters.values()]


def test_pinned_signatures() -> None:
    assert _params(qq.JobQueue.__init__) == [
        ("self", "POSITIONAL_OR_KEYWORD"), ("db", "POSITIONAL_OR_KEYWORD"),
        ("name", "POSITIONAL_OR_KEYWORD"), ("jobs", "POSITIONAL_OR_KEYWORD"),
        ("clock", "POSITIONAL_OR_KEYWORD"), ("seed", "KEYWORD_ONLY"),
        ("settings", "VAR_KEYWORD"),
    ]
    enqueue = dict(_params(qq.JobQueue.enqueue))
    assert list(enqueue)[:4] == ["self", "tenant", "topic", "payload"]
    for keyword in ("tr", "in_", "at", "priority", "max_retries", "key"):
        assert enqueue[keyword] == "KEYWORD_ONLY", keyword
    job = dict(_params(qq.job))
    for option in ("topic", "priority", "max_retries", "timeout", "transactional"):
        assert job[option] == "KEYWORD_ONLY", option
    for method in ("enqueue_many", "drain", "run", "stop", "get_job", "cancel", "dead_letters",
                   "retry_dead", "purge_dead", "stats"):
        assert callable(getattr(qq.JobQueue, method)), method


def test_job_meta_carries_the_documented_fields() -> None:
    meta = qq.JobMeta("shop", "mail", "j1", 2, 3, 1_800_000_000_000_000, 1_800_000_030_000_000, 7)
    assert (meta.tenant, meta.topic, meta.job_id, meta.attempt, meta.max_retries) == (
        "shop", "mail", "j1", 2, 3
    )
    assert meta.enqueued_at.timestamp() == 1_800_000_000 and meta.enqueued_at.tzinfo is not None
    assert (meta.lease_deadline - meta.enqueued_at).total_seconds() == 30
    assert meta.tr is None and meta.priority == 7 and not meta.is_last_attempt
    # lease_lost behaves as a threading.Event: a waiter sees a set() from another thread
    assert not meta.lease_lost.is_set() and meta.lease_lost.wait(0.001) is False
    threading.Timer(0.01, meta.lease_lost.set).start()
    assert meta.lease_lost.wait(5) is True and meta.lease_lost.is_set()


def test_results_are_constructible() -> None:
    assert qq.Ok().value is None and qq.Ok(3).value == 3
    assert qq.Error("x").reason == "x"
    assert qq.Snooze(1.5).seconds == 1.5
    assert qq.Discard("why").reason == "why"
    with pytest.raises(ValueError):
        qq.Snooze(-1)


def test_manual_clock_moves_only_when_told() -> None:
    clock = qq.ManualClock(100.0)
    assert clock.now() == 100.0
    clock.advance(2.5)
    assert clock.now() == 102.5
    clock.set(7.0)
    assert clock.now() == 7.0
    assert isinstance(qq.SystemClock().now(), float)


def test_drain_and_run_default_to_the_same_concurrency() -> None:
    import inspect

    drain = inspect.signature(qq.JobQueue.drain).parameters["concurrency"].default
    run = inspect.signature(qq.JobQueue.run).parameters["concurrency"].default
    assert drain == run


def test_importing_the_package_loads_nothing_else_until_a_name_is_used() -> None:
    """The console script guards the CLI's imports against a Ctrl-C (``quick_queue.__main__``):
    that holds only while the package import, which runs before it, imports nothing."""
    import subprocess
    import sys

    probe = (
        "import sys, quick_queue as qq\n"
        "before = sorted(m for m in sys.modules if m.startswith('quick_queue'))\n"
        "qq.JobQueue\n"
        "print(before, 'quick_queue.queue' in sys.modules, 'JobQueue' in dir(qq))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == ["['quick_queue']", "True", "True"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'JobQeue'"):
        qq.JobQeue  # noqa: B018
