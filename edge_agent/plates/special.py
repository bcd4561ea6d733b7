"""Special plates (issue 11): police, Hong Kong/Macau, embassy, consulate, armed police,
coach, test and oversize plates. Read them when possible, but never as a confident civil
reading: their owners are not civil trucks the gate knows, and a special plate misread as a
civil one would be a false identity. Pure functions of the reading and the plate's colour.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["SPECIAL_CAP", "plate_colour", "special_kind"]

#: The most confidence a reading of a special plate carries: below any gate threshold
#: (config: min_confidence >= 0.5), so the console always asks the operator.
SPECIAL_CAP = 0.45

#: Special characters in a plate's text and the kind of plate they mark. 挂 (trailer) is
#: an ordinary civil plate of a coal truck's trailer and is not here.
_MARKERS = {"警": "police", "港": "hk_macau", "澳": "hk_macau", "使": "embassy",
            "领": "consulate", "学": "coach", "试": "test", "超": "oversize"}


def special_kind(text: str | None, color: str, raw: str = "") -> str | None:
    """The kind of special plate, or None for a civil plate (or no plate at all).

    ``text`` is the grammar-valid reading (or None), ``color`` the plate's background
    colour, ``raw`` the recogniser's unconstrained best-path text, which may show a marker
    (警, WJ) that the grammar-bound decoder could not place.
    """
    for c in (text or ""):
        if c in _MARKERS:
            return _MARKERS[c]
    if raw.startswith("WJ"):  # WJ + province + digits; a civil serial may hold "WJ"
        return "armed_police"
    if color in ("white", "black"):
        # Civil plates are blue, yellow or green; a white or black plate is a police,
        # armed-police, embassy or Hong Kong/Macau plate even when no marker was read.
        # Only a plate-like reading makes it a plate: a white sign with text is not.
        if text is not None:
            return "special_colour"
        marked = [_MARKERS[c] for c in raw if c in _MARKERS]
        if marked:
            return marked[0]
        # A plate-length row of characters on a white or black plate that the grammar
        # cannot place (an embassy plate whose red 使 was lost, a WJ plate): an unreadable
        # special plate. Not a reading, so a white sign costs nothing but an operator look.
        return "special_colour" if len(raw) >= 6 else None
    if text is None:
        marked = [_MARKERS[c] for c in raw if c in _MARKERS]
        # A marker beside at least four plate characters: a plate we could not read whole.
        if marked and len(raw) >= 5:
            return marked[0]
    return None


# HSV bands of plate backgrounds (OpenCV hue 0..179). Wide on purpose: real plates fade,
# and white balance at night shifts blue towards cyan and yellow towards orange.
_BANDS = {"blue": (95, 135), "yellow": (12, 35), "green": (36, 94)}


def plate_colour(crop: np.ndarray) -> str:
    """The background colour of a squared-up plate crop.

    The background is the larger of the two tone classes (characters are thin strokes),
    split by Otsu on brightness; its median hue, saturation and value name the colour.
    """
    h, w = crop.shape[:2]
    inner = crop[int(h * 0.2): int(h * 0.8), int(w * 0.05): int(w * 0.95)]
    if inner.size == 0:
        return "blue"
    hsv = cv2.cvtColor(cv2.GaussianBlur(inner, (3, 3), 0), cv2.COLOR_BGR2HSV).reshape(-1, 3)
    v = hsv[:, 2]
    t, _ = cv2.threshold(v.reshape(1, -1), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright = v > t
    bg = hsv[bright] if bright.mean() > 0.5 else hsv[~bright]
    if bg.size == 0:
        bg = hsv
    hue, sat, val = (float(np.median(bg[:, i])) for i in range(3))
    if sat >= 70 and val >= 40:
        for name, (lo, hi) in _BANDS.items():
            if lo <= hue <= hi:
                return name
    if val < 55 and sat < 70:
        return "black"
    if sat < 45 and val >= 120:
        return "white"
    # Dim or washed-out but tinted: the nearest civil colour by hue.
    if 95 <= hue <= 135:
        return "blue"
    if 12 <= hue <= 35:
        return "yellow"
    if 36 <= hue <= 94:
        return "green"
    return "unknown"
