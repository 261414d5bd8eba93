"""quick_queue: a QuiCK-style job queue.

Transactional enqueue (a job commits with the caller's own writes or not at all), one queue zone
per tenant with a pointer index so every tenant gets its share, leases instead of locks, on an
embedded durable SQLite engine by default or on FoundationDB.

The public names are loaded on first use (PEP 562): ``import quick_queue`` itself imports
nothing else, so the ``quick-queue`` console script can guard its own imports against a Ctrl-C
(``quick_queue.__main__``) and a program that only needs ``quick_queue.kv`` does not pay for
the rest. ``from quick_queue import JobQueue`` and ``quick_queue.JobQueue`` work as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers (at run time: __getattr__)
    from quick_queue.clock import Clock, ManualClock, SystemClock
    from quick_queue.consumer.runner import Summary
    from quick_queue.errors import (
        ArgumentTypeError,
        ClientLibraryMissing,
        ConfigurationError,
        ForeignDatabase,
        HandlerError,
        InvalidArgument,
        JobCancelled,
        JobDead,
        JobDiscarded,
        JobFailed,
        JobNotFound,
        KVError,
        PayloadError,
        QuickQueueError,
        ResultNotKept,
        ResultTimeout,
        StorageError,
        UnknownSetting,
        UnknownTopicWarning,
        UnreadableRecord,
    )
    from quick_queue.jobs import Discard, Error, JobMeta, Ok, Snooze, job
    from quick_queue.kv import Database, Transaction, open, transactional  # noqa: A004
    from quick_queue.models import JobInfo, QueueStats
    from quick_queue.queue import JobQueue
    from quick_queue.settings import Settings

__version__ = "0.1.0"

__all__ = [
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

#: The module each public name comes from.
_HOMES = {
    **dict.fromkeys(["Clock", "ManualClock", "SystemClock"], "quick_queue.clock"),
    "Summary": "quick_queue.consumer.runner",
    **dict.fromkeys(
        [
            "ArgumentTypeError", "ClientLibraryMissing", "ConfigurationError",
            "ForeignDatabase", "HandlerError", "InvalidArgument", "JobCancelled", "JobDead",
            "JobDiscarded", "JobFailed", "JobNotFound", "KVError", "PayloadError",
            "QuickQueueError", "ResultNotKept", "ResultTimeout", "StorageError",
            "UnknownSetting", "UnknownTopicWarning", "UnreadableRecord",
        ],
        "quick_queue.errors",
    ),
    **dict.fromkeys(["Discard", "Error", "JobMeta", "Ok", "Snooze", "job"], "quick_queue.jobs"),
    **dict.fromkeys(["Database", "Transaction", "open", "transactional"], "quick_queue.kv"),
    **dict.fromkeys(["JobInfo", "QueueStats"], "quick_queue.models"),
    "JobQueue": "quick_queue.queue",
    "Settings": "quick_queue.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'quick_queue' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
