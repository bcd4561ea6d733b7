"""The value a plate reader returns, and voting over several frames of a standing truck."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["PlateReading", "vote"]


@dataclass(frozen=True)
class PlateReading:
    """One plate seen in one frame.

    ``confidence`` is calibrated: among readings with confidence c, about a share c is
    the exact plate (measured on simulator frames; see docs/plates.md).
    """

    text: str  # grammar-valid, separators stripped, e.g. "陕K8A3B2"
    color: str  # "blue" | "yellow" | "green" | "yellow_double"
    bbox: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    confidence: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")


def vote(readings: list[list[PlateReading]], min_confidence: float) -> PlateReading | None:
    """The plate of a standing truck from the readings of several frames, or None.

    Each frame contributes its most confident reading. The winner is the text with the
    largest summed confidence; its confidence is that sum divided by the number of frames,
    so frames that saw nothing or saw another text pull it down: a plate read once in five
    frames cannot pass a threshold that one good frame would.
    """
    if not readings:
        return None
    totals: dict[str, float] = defaultdict(float)
    best: dict[str, PlateReading] = {}
    for frame in readings:
        if not frame:
            continue
        top = max(frame, key=lambda r: r.confidence)
        totals[top.text] += top.confidence
        if top.text not in best or top.confidence > best[top.text].confidence:
            best[top.text] = top
    if not totals:
        return None
    text = max(totals, key=lambda k: totals[k])
    confidence = min(1.0, totals[text] / len(readings))
    if confidence < min_confidence:
        return None
    b = best[text]
    return PlateReading(text=text, color=b.color, bbox=b.bbox, confidence=confidence)
