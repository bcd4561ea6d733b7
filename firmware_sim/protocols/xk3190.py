"""Yaohua XK3190-A9 continuous output (tf=0) and its "format 2" variant.

tf=0 frame, 12 bytes: STX, sign, six digits (most significant first), decimal places 0-4,
XOR high nibble, XOR low nibble, ETX. The XOR runs over bytes 1-8 (sign .. decimals) and each
nibble is sent as ASCII: +0x30 when <= 9, else +0x37 (so 0x1B -> '1', 'B').
"""

from __future__ import annotations

from firmware_sim.errors import FrameError

__all__ = ["STX", "ETX", "encode_tf0", "encode_format2", "xor_check", "nibble_ascii"]

STX = 0x02
ETX = 0x03
_DIGITS = 6
_MAX_DECIMALS = 4


def nibble_ascii(nibble: int) -> int:
    """One 4-bit value as the A9 sends it: '0'-'9' (+0x30), then 'A'-'F' (+0x37)."""
    return nibble + 0x30 if nibble <= 9 else nibble + 0x37


def xor_check(body: bytes) -> bytes:
    """The two check bytes for ``body`` (sign .. decimals)."""
    x = 0
    for b in body:
        x ^= b
    return bytes((nibble_ascii(x >> 4), nibble_ascii(x & 0x0F)))


def _check_range(value: int, decimals: int) -> None:
    if not 0 <= decimals <= _MAX_DECIMALS:
        raise FrameError(f"XK3190 decimals must be 0-4, got {decimals}")
    if abs(value) >= 10**_DIGITS:
        raise FrameError(f"XK3190 weight {value} does not fit six digits")


def encode_tf0(value: int, decimals: int) -> bytes:
    """Frame for ``value`` display counts (e.g. 2000 with 2 decimals = 20.00)."""
    _check_range(value, decimals)
    body = b"-" if value < 0 else b"+"
    body += f"{abs(value):0{_DIGITS}d}".encode("ascii") + str(decimals).encode("ascii")
    return bytes((STX,)) + body + xor_check(body) + bytes((ETX,))


def encode_format2(value: int, decimals: int) -> bytes:
    """ "Format 2": '=' then the weight field reversed (decimal point included), then the sign."""
    _check_range(value, decimals)
    digits = f"{abs(value):0{_DIGITS}d}"
    field = (
        digits[: _DIGITS - decimals] + "." + digits[_DIGITS - decimals :] if decimals else digits
    )
    sign = "-" if value < 0 else "+"
    return ("=" + field[::-1] + sign).encode("ascii")
