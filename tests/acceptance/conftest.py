"""Fixtures of the acceptance tests that run real worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from workers.procs import Worker


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The worker processes a test starts (append them): each is closed (killed if still
    running) when the test ends, pass or fail."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()
