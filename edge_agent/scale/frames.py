"""Value types shared by the indicator decoders."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

# Indicator weights are converted to integer kilograms with this multiplier per unit.
UNIT_TO_KG: dict[str, Decimal] = {"kg": Decimal(1), "t": Decimal(1000), "g": Decimal("0.001")}


@dataclass(frozen=True)
class Reading:
    """One weight the indicator reported, in the indicator's unit.

    ``stable`` is the indicator's own motion flag when the protocol has one, else ``None``
    (the XK3190 continuous output has none: stability is inferred in software).
    """

    weight: Decimal
    unit: str | None = None
    stable: bool | None = None
    overload: bool = False
    net: bool = False
    tare: Decimal | None = None

    def kg(self, default_unit: str = "kg") -> int:
        """The weight in integer kilograms (rounded half-even; indicators divide in whole e)."""
        unit = self.unit or default_unit
        factor = UNIT_TO_KG.get(unit)
        if factor is None:
            raise ValueError(f"unknown weight unit {unit!r}; expected one of {sorted(UNIT_TO_KG)}")
        return int((self.weight * factor).to_integral_value())


@dataclass(frozen=True)
class BadFrame:
    """A frame-shaped sequence that failed a check (checksum, digits, status bits)."""

    reason: str


Decoded = tuple[int, Reading | BadFrame | None]


class Decoder(Protocol):
    """A pure framer: looks at the front of ``buffer`` and says how many bytes it used."""

    name: str

    def decode(self, buffer: bytes) -> Decoded: ...


def skip_to(buffer: bytes, start_bytes: bytes, offset: int = 0) -> int:
    """Index of the first byte at or after ``offset`` that can start a frame (len if none)."""
    best = len(buffer)
    for b in start_bytes:
        i = buffer.find(bytes([b]), offset)
        if i != -1 and i < best:
            best = i
    return best
