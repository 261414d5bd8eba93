"""Every exception quick_queue raises, in one tree under ``QuickQueueError``.

``except quick_queue.QuickQueueError`` catches everything the package raises on purpose. Where
callers caught a built-in type before (``ValueError`` for a bad argument, ``TypeError`` for a
wrong type), the built-in stays a base, so that code keeps working::

    Exception
     └── QuickQueueError                root: every error the package raises on purpose
          ├── KVError                   the storage layer; .code is FoundationDB's error code
          │    ├── StorageError         the embedded engine's file is unusable; .path names it
          │    │    └── ForeignDatabase an SQLite file that is not a queue store (pass
          │    │                        adopt=True to open() to take it over)
          │    └── ClientLibraryMissing fdb: URL without the FoundationDB client library
          ├── ConfigurationError        (ValueError) a setting, URL, queue name or @job option
          │    │                        that cannot work: fix the value the message names
          │    └── UnknownSetting       (TypeError) a keyword JobQueue/Settings does not know
          ├── HandlerError              (TypeError) a @job class that cannot be registered:
          │                             no perform(self, payload, meta), a Payload that
          │                             is not a pydantic model, a class without @job
          ├── InvalidArgument           (ValueError) a bad argument to a queue call: tenant,
          │    │                        topic, priority, in_/at, key, max_retries, an
          │    │                        enqueue_many item, Snooze(seconds)
          │    ├── PayloadError         the payload fails its topic's model, is not JSON, or
          │    │                        is over the size limit (store the blob elsewhere)
          │    └── ArgumentTypeError    (TypeError) a database or transaction was expected
          ├── UnreadableRecord          a stored job record that is not quick_queue's format
          │                             (a damaged page or a foreign writer): see dead_kind
          │                             "unreadable" in dead_letters()
          ├── JobFailed                 queue.result(): the job ended without a result; .job
          │    ├── JobDead              (a JobInfo) says how: failed max_retries + 1 times,
          │    ├── JobDiscarded         discarded by its handler (Discard(reason)),
          │    └── JobCancelled         or cancelled
          ├── ResultTimeout             (TimeoutError) queue.result(wait=...): not finished
          │                             within the wait
          ├── JobNotFound               (LookupError) no such job: unknown id, or it finished
          │                             without keep_result, or its kept entry expired
          └── ResultNotKept             (LookupError) it completed but its value could not be
                                        kept (not JSON, too large): .note says which

Warnings (``warnings.warn``, never raised unless the warnings filter says so)::

    UserWarning
     └── UnknownTopicWarning            enqueue of a topic no registered handler takes, on a
                                        queue that has handlers (a misspelt topic?)

Every message says what was wrong and what to do about it.
"""

from __future__ import annotations

from quick_queue.kv.errors import (
    ClientLibraryMissing,
    ConfigurationError,
    ForeignDatabase,
    KVError,
    QuickQueueError,
    StorageError,
)

# ConfigurationError is defined in kv.errors (the storage layer raises it for URLs and open()
# options, and imports nothing above itself); the queue raises the same class for settings,
# queue names and @job options.


class UnknownSetting(ConfigurationError, TypeError):
    """A keyword argument that is not one of ``quick_queue.Settings``' fields."""


class HandlerError(QuickQueueError, TypeError):
    """A ``@job`` class that cannot be registered or run as written."""


class InvalidArgument(QuickQueueError, ValueError):
    """A bad argument to a queue call (``enqueue``'s tenant, topic, priority, ``in_``/``at``,
    key, ``max_retries``; an ``enqueue_many`` item; ``Snooze(seconds)``)."""


class PayloadError(InvalidArgument):
    """A payload that fails its topic's model, is not JSON, or is over the size limit."""


class ArgumentTypeError(InvalidArgument, TypeError):
    """An argument of the wrong type where a database or a transaction was expected."""


class UnreadableRecord(QuickQueueError):
    """A stored record that cannot be decoded (not UTF-8 JSON in quick_queue's format).

    ``raw`` is the record's bytes as stored, ``reason`` what failed."""

    def __init__(self, what: str, raw: bytes, reason: str) -> None:
        self.what = what
        self.raw = raw
        self.reason = reason
        super().__init__(
            f"{what} is unreadable ({reason}); it was not written by this version of "
            "quick_queue or the storage is damaged: the job is moved to the dead letters "
            "(dead_kind 'unreadable') with its raw bytes when a worker meets it"
        )

    def __reduce__(self) -> tuple[type[UnreadableRecord], tuple[str, bytes, str]]:
        return (type(self), (self.what, self.raw, self.reason))


class JobFailed(QuickQueueError):
    """``queue.result()`` of a job that ended without a result; ``job`` is its ``JobInfo``
    (``state``, ``last_error``, ``reason``)."""

    def __init__(self, message: str, job: object) -> None:
        super().__init__(message)
        self.job = job

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str, object]]:
        return (type(self), (str(self), self.job))


class JobDead(JobFailed):
    """The job failed ``max_retries + 1`` times (or could not run) and is a dead letter."""


class JobDiscarded(JobFailed):
    """The job's handler gave up on it (``Discard(reason)``)."""


class JobCancelled(JobFailed):
    """The job was cancelled (``queue.cancel``)."""


class ResultTimeout(QuickQueueError, TimeoutError):
    """``queue.result(wait=...)``: the job had not finished when the wait ran out."""


class JobNotFound(QuickQueueError, LookupError):
    """No live job, dead letter or kept result with this id in this tenant."""


class ResultNotKept(QuickQueueError, LookupError):
    """The job completed, but its returned value could not be kept; ``note`` says why."""

    def __init__(self, message: str, note: str) -> None:
        super().__init__(message)
        self.note = note

    def __reduce__(self) -> tuple[type[ResultNotKept], tuple[str, str]]:
        return (type(self), (str(self), self.note))


class UnknownTopicWarning(UserWarning):
    """``enqueue`` of a topic that none of the queue's registered handlers takes."""


__all__ = [
    "ArgumentTypeError",
    "ClientLibraryMissing",
    "ConfigurationError",
    "ForeignDatabase",
    "HandlerError",
    "InvalidArgument",
    "JobCancelled",
    "JobDead",
    "JobDiscarded",
    "JobFailed",
    "JobNotFound",
    "KVError",
    "PayloadError",
    "QuickQueueError",
    "ResultNotKept",
    "ResultTimeout",
    "StorageError",
    "UnknownSetting",
    "UnknownTopicWarning",
    "UnreadableRecord",
]
