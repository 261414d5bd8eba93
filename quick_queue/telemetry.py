"""Process-local counters of what a consumer did (the store keeps its own per-topic counters)."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def add_many(self, amounts: Mapping[str, int]) -> None:
        """``add(name, amount)`` for each item, under one lock."""
        with self._lock:
            values = self._values
            for name, amount in amounts.items():
                values[name] = values.get(name, 0) + amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
