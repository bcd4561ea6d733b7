"""Mettler Toledo continuous output: STX, status words A/B/C, weight, tare, CR, checksum.

Every byte keeps bit 7 clear (the original is 7-bit data; ptys here are 8N1). The checksum is
the two's complement of the 7-bit sum of all previous bytes, so a whole frame sums to 0 mod 128.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.errors import FrameError

__all__ = ["ToledoStatus", "encode", "checksum", "decimal_code", "count_by_code"]

STX = 0x02
CR = 0x0D
_ALWAYS_ONE = 1 << 5
# SWA bits 0-2: where the decimal point goes. Code 2 means "no decimal point".
_DECIMAL_CODES = {0: 0b010, 1: 0b011, 2: 0b100, 3: 0b101, 4: 0b110, 5: 0b111}
_COUNT_BY = {1: 0b01, 2: 0b10, 5: 0b11}


@dataclass(frozen=True)
class ToledoStatus:
    net: bool = False
    negative: bool = False
    out_of_range: bool = False
    motion: bool = False
    kg: bool = True


def decimal_code(decimals: int) -> int:
    if decimals not in _DECIMAL_CODES:
        raise FrameError(f"Toledo decimals must be 0-5, got {decimals}")
    return _DECIMAL_CODES[decimals]


def count_by_code(division: int) -> int:
    """SWA bits 3-4 from the display division (1, 2, 5 times a power of ten)."""
    d = division
    while d >= 10 and d % 10 == 0:
        d //= 10
    if d not in _COUNT_BY:
        raise FrameError(f"Toledo division must be 1, 2 or 5 x 10^n, got {division}")
    return _COUNT_BY[d]


def checksum(data: bytes) -> int:
    return (-sum(data)) & 0x7F


def encode(
    weight: int,
    tare: int,
    decimals: int,
    division: int,
    status: ToledoStatus,
    *,
    with_checksum: bool = True,
) -> bytes:
    """One frame. ``weight``/``tare`` are display counts; the sign goes in SWB bit 1."""
    if abs(weight) >= 10**6 or not 0 <= tare < 10**6:
        raise FrameError(f"Toledo weight {weight} / tare {tare} does not fit six digits")
    swa = _ALWAYS_ONE | decimal_code(decimals) | (count_by_code(division) << 3)
    swb = (
        _ALWAYS_ONE
        | (1 if status.net else 0)
        | (2 if status.negative or weight < 0 else 0)
        | (4 if status.out_of_range else 0)
        | (8 if status.motion else 0)
        | (16 if status.kg else 0)
    )
    swc = _ALWAYS_ONE
    frame = (
        bytes((STX, swa, swb, swc)) + f"{abs(weight):06d}{tare:06d}".encode("ascii") + bytes((CR,))
    )
    return frame + bytes((checksum(frame),)) if with_checksum else frame
