"""A configurable line format for indicators without a built-in decoder.

The pattern must match a whole line (without its terminator) and have a ``weight`` group;
optional groups: ``sign`` (``-`` means negative), ``stable`` (non-empty means stable),
``motion`` (non-empty means moving), ``unit``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from edge_agent.scale.frames import BadFrame, Decoded, Reading

MAX_LINE = 256


class RegexDecoder:
    name = "regex"

    def __init__(self, pattern: str, *, terminator: str = "\r\n") -> None:
        self.pattern = re.compile(pattern.encode("latin-1"))
        if "weight" not in self.pattern.groupindex:
            raise ValueError("the pattern needs a named group (?P<weight>...)")
        if not terminator:
            raise ValueError("the terminator must not be empty")
        self.terminator = terminator.encode("latin-1")

    def decode(self, buffer: bytes) -> Decoded:
        end = buffer.find(self.terminator)
        if end == -1:
            if len(buffer) > MAX_LINE:
                return len(buffer), BadFrame("line too long without terminator")
            return 0, None
        used = end + len(self.terminator)
        line = buffer[:end]
        if not line.strip():
            return used, None
        m = self.pattern.fullmatch(line)
        if m is None:
            return used, BadFrame("line does not match the configured pattern")
        groups = m.groupdict()
        try:
            weight = Decimal(groups["weight"].decode("ascii").replace(" ", ""))
        except (InvalidOperation, UnicodeDecodeError, AttributeError):
            return used, BadFrame("weight group is not a number")
        if not weight.is_finite():
            return used, BadFrame("weight group is not a number")
        if groups.get("sign") == b"-":
            weight = -weight
        stable: bool | None = None
        if "stable" in groups:
            stable = bool(groups["stable"])
        if "motion" in groups:
            stable = not groups["motion"]
        unit = groups.get("unit")
        return used, Reading(
            weight=weight, stable=stable, unit=unit.decode("ascii", "replace") if unit else None
        )
