"""FoundationDB's atomic operations on byte strings, for the embedded engine.

Operands are little-endian unsigned integers. The existing value is zero-extended or truncated to
the operand's length first; a missing value counts as zeros for ``add`` and as absent for ``max``
and ``min`` (which then store the operand), as FoundationDB documents.
"""

from __future__ import annotations

from collections.abc import Callable

AtomicOp = Callable[[bytes | None, bytes], bytes]


def _fit(existing: bytes, length: int) -> bytes:
    if len(existing) >= length:
        return existing[:length]
    return existing + b"\x00" * (length - len(existing))


def atomic_add(existing: bytes | None, param: bytes) -> bytes:
    size = len(param)
    if not size:
        return b""
    # (a counter's stored value has the operand's length: no _fit call for it)
    base = existing if existing is not None and len(existing) == size else _fit(
        existing or b"", size
    )
    total = int.from_bytes(base, "little") + int.from_bytes(param, "little")
    return (total & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def atomic_max(existing: bytes | None, param: bytes) -> bytes:
    if existing is None:
        return param
    base = _fit(existing, len(param))
    return base if int.from_bytes(base, "little") >= int.from_bytes(param, "little") else param


def atomic_min(existing: bytes | None, param: bytes) -> bytes:
    if existing is None:
        return param
    base = _fit(existing, len(param))
    return base if int.from_bytes(base, "little") <= int.from_bytes(param, "little") else param


OPS: dict[str, AtomicOp] = {"add": atomic_add, "max": atomic_max, "min": atomic_min}


def apply_ops(existing: bytes | None, ops: list[tuple[str, bytes]]) -> bytes | None:
    value = existing
    for name, param in ops:
        value = OPS[name](value, param)
    return value


def place_versionstamp(template: bytes, stamp: bytes) -> bytes:
    """Fill FoundationDB's placeholder: ``template`` ends with a 4-byte little-endian offset of
    10 bytes to overwrite with ``stamp``."""
    offset = int.from_bytes(template[-4:], "little")
    body = template[:-4]
    return body[:offset] + stamp + body[offset + 10 :]


def versionstamp_key_range(template: bytes) -> tuple[bytes, bytes]:
    """Every key ``template`` can become: placeholder all 0x00 up to placeholder all 0xFF
    (FoundationDB's write-conflict range for a versionstamped key)."""
    low = place_versionstamp(template, b"\x00" * 10)
    high = place_versionstamp(template, b"\xff" * 10)
    return low, high + b"\x00"


def check_versionstamp_template(template: bytes) -> bool:
    if len(template) < 14:
        return False
    offset = int.from_bytes(template[-4:], "little")
    return offset + 10 <= len(template) - 4
