"""quick_queue: a QuiCK-style job queue.

Transactional enqueue (a job commits with the caller's own writes or not at all), one queue zone
per tenant with a pointer index so every tenant gets its share, leases instead of locks, on an
embedded durable SQLite engine by default or on FoundationDB.
"""

from __future__ import annotations

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
