"""A JSON log format: one JSON object per line, for log shippers (``quick-queue worker
--log-format json``; from Python, ``use_json_logs()`` after configuring logging, or set
``JsonFormatter()`` on your own handler).

Each line has ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``pid`` and ``message``; a job's
state change (``quick_queue.events.log_event``) adds ``event``, ``job_id``, ``tenant``,
``topic``, ``attempt`` and, when known, ``duration`` (seconds the handler ran), ``waited``
(seconds from due to start), ``outcome`` and ``reason``. Tenant names and errors are JSON
strings, so none can break a line or forge another.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from quick_queue.events import JobEvent


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        event = getattr(record, "job_event", None)
        if isinstance(event, JobEvent):
            out.update(_event_fields(event))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _event_fields(event: JobEvent) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": event.kind.value, "job_id": event.job_id, "tenant": event.tenant,
        "topic": event.topic, "attempt": event.attempt,
    }
    if event.duration is not None:
        fields["duration"] = round(event.duration, 6)
    if event.waited is not None:
        fields["waited"] = round(event.waited, 6)
    if event.outcome is not None:
        fields["outcome"] = event.outcome.value
    if event.reason:
        fields["reason"] = event.reason
    return fields


def use_json_logs(logger: str = "quick_queue") -> None:
    """Give every handler of ``logger`` (the ``quick_queue`` loggers by default) the JSON
    format."""
    for handler in logging.getLogger(logger).handlers:
        handler.setFormatter(JsonFormatter())


def set_log_format(name: str) -> None:
    """``--log-format``: ``text`` (leave it) or ``json``."""
    if name == "json":
        use_json_logs()
    elif name != "text":
        raise ValueError(f"--log-format must be text or json, not {name!r}")
