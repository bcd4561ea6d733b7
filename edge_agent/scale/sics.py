"""MT-SICS weight responses (``S S     1234 kg``), one CRLF-terminated line each.

Status after ``S``/``SI``: ``S`` stable, ``D`` dynamic (moving), ``+``/``-`` over/underload,
``I`` busy. Only ``S`` and ``D`` carry a weight.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from edge_agent.scale.frames import BadFrame, Decoded, Reading

MAX_LINE = 64
_LINE = re.compile(rb"^(S|SI|SIR)\s+([SD])\s+(-?\d+(?:\.\d+)?)\s+(kg|t|g)$")
_STATUS_ONLY = re.compile(rb"^(S|SI|SIR)\s+([I+\-L])\s*$")


class SicsDecoder:
    name = "sics"

    def decode(self, buffer: bytes) -> Decoded:
        end = buffer.find(b"\n")
        if end == -1:
            if len(buffer) > MAX_LINE:
                return len(buffer), BadFrame("line too long without LF")
            return 0, None
        line = buffer[:end].rstrip(b"\r").strip(b" ")
        used = end + 1
        if not line:
            return used, None
        m = _LINE.match(line)
        if m is None:
            s = _STATUS_ONLY.match(line)
            if s is not None:
                status = s.group(2)
                if status == b"+":
                    return used, BadFrame("overload (S +)")
                return used, BadFrame(f"no weight (S {status.decode()})")
            return used, BadFrame("not an MT-SICS weight response")
        try:
            weight = Decimal(m.group(3).decode("ascii"))
        except InvalidOperation:
            return used, BadFrame("weight not a number")
        return used, Reading(weight=weight, unit=m.group(4).decode(), stable=m.group(2) == b"S")
