"""A zone's pointer record key and its due entries' keys are packed with the one-element
packers (issue 10: a third of the time): the bytes must be the tuple layer's, for every time a
pointer can vest at, or scanners and producers would miss each other's entries."""

from __future__ import annotations

import pytest

from quick_queue.core.pointers import due_entry
from quick_queue.keys import Layout, pack

TIMES = [0, 1, 1023, 1024, 65_535, 1_764_316_800_123_456, 1 << 62, (1 << 64) - 2, -1, -70_000]
TENANTS = ["t", "t000123", "", "ümlaut", "nul\x00inside", "x" * 300]


@pytest.mark.parametrize("tenant", TENANTS)
def test_pointer_and_due_keys_are_the_tuple_layers(tenant: str) -> None:
    layout = Layout("q")
    assert layout.pointer(tenant) == layout.record_prefix + pack((tenant,))
    for at in TIMES:
        key = layout.due(at, tenant)
        assert key == layout.due_prefix + pack((at, tenant))
        assert due_entry(layout, key) == (at, tenant)
