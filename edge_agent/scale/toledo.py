"""Mettler Toledo continuous output, DESIGN.md §5.

STX, status words A/B/C, six weight digits, six tare digits, CR, and (when enabled on the
indicator) a checksum: the two's complement of the 7-bit sum of all previous bytes.
SWA bits 0-2 give the decimal position; SWB bit 1 = negative, bit 2 = out of range,
bit 3 = motion, bit 0 = net. Status bytes always have bit 5 set and bit 7 clear.
"""

from __future__ import annotations

from decimal import Decimal

from edge_agent.scale.frames import BadFrame, Decoded, Reading, skip_to

STX = 0x02
CR = 0x0D
BODY_LEN = 17  # STX + 3 status + 6 weight + 6 tare + CR

# SWA bits 0-2 -> power of ten applied to the six digits.
_DECIMAL_EXPONENT = {0: 2, 1: 1, 2: 0, 3: -1, 4: -2, 5: -3, 6: -4, 7: -5}


def checksum(data: bytes) -> int:
    """Two's complement of the 7-bit sum of ``data``."""
    return (-sum(data)) & 0x7F


def _digits(raw: bytes) -> int | None:
    # Leading zeros may be blanked as spaces on some firmware.
    text = raw.decode("ascii", "replace").lstrip(" ")
    if not text or not text.isdigit() or not text.isascii():
        return None
    return int(text)


class ToledoDecoder:
    name = "toledo"

    def __init__(self, *, checksum: bool = True) -> None:
        self.checksum = checksum
        self.frame_len = BODY_LEN + (1 if checksum else 0)

    def decode(self, buffer: bytes) -> Decoded:
        start = skip_to(buffer, bytes([STX]))
        if start > 0:
            return start, None
        nxt = buffer.find(bytes([STX]), 1, self.frame_len)
        # The checksum byte may legitimately equal STX, so only look before it.
        if nxt != -1 and nxt < BODY_LEN:
            return nxt, BadFrame("truncated frame")
        if len(buffer) < self.frame_len:
            return 0, None
        frame = buffer[: self.frame_len]
        if frame[BODY_LEN - 1] != CR:
            return 1, BadFrame("no CR at byte 16")
        if self.checksum and frame[BODY_LEN] != checksum(frame[:BODY_LEN]):
            return self.frame_len, BadFrame("checksum mismatch")
        swa, swb, _swc = frame[1], frame[2], frame[3]
        if any(s & 0x20 == 0 or s & 0x80 for s in frame[1:4]):
            return self.frame_len, BadFrame("status word without its fixed bits")
        weight, tare = _digits(frame[4:10]), _digits(frame[10:16])
        if weight is None or tare is None:
            return self.frame_len, BadFrame("weight or tare digits out of range")
        exp = _DECIMAL_EXPONENT[swa & 0x07]
        value = Decimal(weight).scaleb(exp)
        if swb & 0x02:
            value = -value
        return self.frame_len, Reading(
            weight=value,
            stable=not bool(swb & 0x08),
            overload=bool(swb & 0x04),
            net=bool(swb & 0x01),
            tare=Decimal(tare).scaleb(exp),
        )
