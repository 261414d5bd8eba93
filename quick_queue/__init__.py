"""quick_queue: a QuiCK-style transactional, multi-tenant job queue."""

from __future__ import annotations

__version__ = "0.1.0"
