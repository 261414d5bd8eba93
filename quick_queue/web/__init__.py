"""The dashboard server and JSON API (the optional ``web`` extra). ``create_app(queue,
token=...)`` builds the app; ``quick-queue dashboard`` serves it."""

from __future__ import annotations

from quick_queue.web.app import create_app

__all__ = ["create_app"]
