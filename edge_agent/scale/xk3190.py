"""Yaohua XK3190-A9 continuous output (tf=0), DESIGN.md §5.

Format 1, 12 bytes: STX, sign ``+``/``-``, six digits (most significant first), decimal places
``0``-``4``, XOR high nibble, XOR low nibble, ETX. The XOR covers bytes 1-8 and each nibble is
sent as ASCII (+0x30 when <= 9, else +0x37). Format 2 ("=" frames) has no check at all: ``=``,
the weight text reversed (digits and decimal point), then the sign.
"""

from __future__ import annotations

from decimal import Decimal

from edge_agent.scale.frames import BadFrame, Decoded, Reading, skip_to

STX = 0x02
ETX = 0x03
FRAME_LEN = 12
DIGITS = b"0123456789"


def nibble_char(n: int) -> int:
    """ASCII form of one XOR nibble as the A9 sends it."""
    return n + 0x30 if n <= 9 else n + 0x37


def xor_check(body: bytes) -> bytes:
    """The two check characters for bytes 1-8 of a frame."""
    x = 0
    for b in body:
        x ^= b
    return bytes([nibble_char(x >> 4), nibble_char(x & 0x0F)])


class Xk3190Decoder:
    """Format 1 (STX ... ETX with an XOR check)."""

    name = "xk3190"

    def decode(self, buffer: bytes) -> Decoded:
        start = skip_to(buffer, bytes([STX]))
        if start > 0:
            return start, None
        # STX never occurs inside a frame, so a second one before byte 12 means a cut-off frame.
        nxt = buffer.find(bytes([STX]), 1, FRAME_LEN)
        if nxt != -1:
            return nxt, BadFrame("truncated frame")
        if len(buffer) < FRAME_LEN:
            return 0, None
        frame = buffer[:FRAME_LEN]
        body = frame[1:9]
        if frame[11] != ETX:
            return FRAME_LEN, BadFrame("no ETX at byte 11")
        if frame[9:11] != xor_check(body):
            return FRAME_LEN, BadFrame("XOR check mismatch")
        sign, digits, dec = body[0:1], body[1:7], body[7]
        if sign not in (b"+", b"-") or any(d not in DIGITS for d in digits):
            return FRAME_LEN, BadFrame("sign or digits out of range")
        if dec not in b"01234":
            return FRAME_LEN, BadFrame("decimal places out of range")
        value = Decimal(int(digits)).scaleb(-(dec - 0x30))
        if sign == b"-":
            value = -value
        return FRAME_LEN, Reading(weight=value)


class Xk3190Format2Decoder:
    """Format 2: ``=`` + reversed weight text + sign. No checksum, so only shape is checked."""

    name = "xk3190_format2"
    max_body = 8  # six digits and a decimal point, with one spare for 7-digit models

    def decode(self, buffer: bytes) -> Decoded:
        start = skip_to(buffer, b"=")
        if start > 0:
            return start, None
        # Body runs until the sign character.
        for i in range(1, min(len(buffer), self.max_body + 2)):
            c = buffer[i]
            if c in b"+-":
                return i + 1, self._parse(buffer[1:i], c)
            if c not in DIGITS and c != ord("."):
                return i, BadFrame("unexpected byte in '=' frame")
        if len(buffer) >= self.max_body + 2:
            return 1, BadFrame("'=' frame without a sign")
        return 0, None

    @staticmethod
    def _parse(body: bytes, sign: int) -> Reading | BadFrame:
        text = body[::-1].decode("ascii")
        digits = text.replace(".", "")
        if len(digits) < 6 or text.count(".") > 1 or text.startswith(".") or text.endswith("."):
            return BadFrame("malformed '=' frame body")
        value = Decimal(text)
        return Reading(weight=-value if sign == ord("-") else value)
