"""The grammar of Chinese civil licence plates (GA 36-2018), as pure functions.

A plate is a province character, an issuing-office letter, then five characters (six for
new-energy plates). I and O are never used (they read as 1 and 0). Some plates end in a
special character instead of the fifth: 挂 trailer, 学 driving school, 警 police, 港/澳
cross-border, 领 consulate, 试 test, 超 oversize. Embassy plates start with 使.
"""

from __future__ import annotations

import re

__all__ = [
    "PROVINCES",
    "LETTERS",
    "ALNUM",
    "SUFFIXES",
    "PLATE_CHARS",
    "normalise_plate",
    "is_new_energy",
]

#: Province abbreviations in GA 36 order.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
#: Letters used on plates: A-Z without I and O.
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
#: Characters that may replace the last serial character.
SUFFIXES = "挂学警港澳领试超"
#: Letters that mark a small new-energy plate in third position (D/A/B/C/E electric,
#: F/G/H/J/K hybrid), or a large new-energy plate in last position.
NEW_ENERGY_LETTERS = "DABCEFGHJK"
#: Every character a plate may hold; the recogniser is restricted to these.
PLATE_CHARS = PROVINCES + ALNUM + SUFFIXES + "使"

_P = f"[{PROVINCES}]"
_L = f"[{LETTERS}]"
_A = f"[{ALNUM}]"
_NE = f"[{NEW_ENERGY_LETTERS}]"
_ORDINARY = re.compile(f"{_P}{_L}{_A}{{5}}")
_SUFFIXED = re.compile(f"{_P}{_L}{_A}{{4}}[{SUFFIXES}]")
_NEW_ENERGY_SMALL = re.compile(f"{_P}{_L}{_NE}{_A}[0-9]{{4}}")
_NEW_ENERGY_LARGE = re.compile(f"{_P}{_L}[0-9]{{5}}{_NE}")
_EMBASSY = re.compile("使[0-9]{6}")

# Separators and look-alikes an OCR or a human typist produces; mapped before matching.
_SEPARATORS = re.compile(r"[\s·•・.\-_—–．－･]+")
_FULLWIDTH = (
    {chr(0xFF10 + i): str(i) for i in range(10)}
    | {chr(0xFF21 + i): chr(0x41 + i) for i in range(26)}
    | {chr(0xFF41 + i): chr(0x41 + i) for i in range(26)}  # full-width lowercase
)


def _clean(text: str) -> str:
    text = _SEPARATORS.sub("", text)
    text = "".join(_FULLWIDTH.get(c, c) for c in text)
    return text.upper()


def normalise_plate(text: str) -> str | None:
    """Return ``text`` as a grammar-valid plate with separators stripped, or None.

    No guessing: a string that is not a valid plate after removing separators and
    mapping full-width characters returns None (``"陕K·8A3B2"`` -> ``"陕K8A3B2"``,
    ``"陕KI8A3B"`` -> None).
    """
    plate = _clean(text)
    for pattern in (_ORDINARY, _SUFFIXED, _NEW_ENERGY_SMALL, _NEW_ENERGY_LARGE, _EMBASSY):
        if pattern.fullmatch(plate):
            return plate
    return None


def is_new_energy(plate: str) -> bool:
    """True for an eight-character new-energy plate (already normalised)."""
    return bool(_NEW_ENERGY_SMALL.fullmatch(plate) or _NEW_ENERGY_LARGE.fullmatch(plate))
