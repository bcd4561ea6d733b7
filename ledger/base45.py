"""Base45 (RFC 9285): binary data in the QR code alphanumeric character set.

Written here rather than taken from PyPI: the decoder must be strict (RFC 9285 §4.2 — reject
characters outside the alphabet, a dangling single character and chunk values above 0xFFFF)
and raise this package's typed error, so a fuzzed or damaged QR is always a clear rejection.
"""

from __future__ import annotations

from ledger.ticket_errors import TicketFormatError

__all__ = ["ALPHABET", "Base45Error", "b45encode", "b45decode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


class Base45Error(TicketFormatError):
    """Text is not valid base45 (RFC 9285)."""


def b45encode(data: bytes) -> str:
    """Encode ``data``: each byte pair -> 3 characters, a trailing single byte -> 2 (§4)."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = divmod(n, 45 * 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[d], ALPHABET[e], ALPHABET[c])
    if len(data) % 2:
        e, d = divmod(data[-1], 45)
        out += (ALPHABET[d], ALPHABET[e])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode base45 ``text``; raise :class:`Base45Error` naming the offending position."""
    if len(text) % 3 == 1:
        raise Base45Error(
            f"base45 text is {len(text)} characters; a length of 3k+1 is never valid "
            "(the code was cut off or has an extra character)"
        )
    values: list[int] = []
    for pos, ch in enumerate(text):
        v = _VALUE.get(ch)
        if v is None:
            raise Base45Error(
                f"character {ch!r} at position {pos} is not in the base45 alphabet "
                "(0-9, A-Z, space and $%*+-./:)"
            )
        values.append(v)
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 45 * 45
        if n > 0xFFFF:
            raise Base45Error(f"base45 chunk at position {i} decodes to {n} > 65535")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise Base45Error(f"base45 final pair at position {len(values) - 2} is {n} > 255")
        out.append(n)
    return bytes(out)
