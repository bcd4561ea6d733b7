"""PlateReader: frame in, plate readings out. Localise with OpenCV, recognise the crop.

Each crop is read by two recognisers of different generations (PP-OCRv4 mobile, PP-OCRv6
small). Each decodes on its own under the plate grammar; the text with the larger summed
log-likelihood under both models wins, and whether both decoded the same text is evidence
for the calibration: two models trained apart rarely make the same mistake, while either
alone is sometimes confidently wrong (Q read as 0, a province character under blur).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_agent.plates.calibration import Evidence, calibrate
from edge_agent.plates.grammar import normalise_plate
from edge_agent.plates.locate import Candidate, locate
from edge_agent.plates.reading import PlateReading
from edge_agent.plates.recognise import (
    Recogniser,
    constrained_decode,
    ctc_log_likelihood,
    forced_char_probs,
)

__all__ = ["PlateReader"]


class PlateReader:
    """Reads Chinese licence plates in BGR frames on one CPU core.

    ``min_confidence`` drops readings below it (0 keeps every grammar-valid reading);
    ``min_plate_width`` is the narrowest plate, in frame pixels, worth reading (set it
    from the camera's mounting: a 440 mm plate at a gate is usually 120-300 px wide).
    """

    def __init__(self, *, threads: int = 1, max_candidates: int = 3,
                 min_confidence: float = 0.05, min_plate_width: int = 90,
                 models: tuple[str, ...] = ("ppocr-v4-mobile", "ppocr-v6-small")) -> None:
        if not 1 <= len(models) <= 2:
            raise ValueError(f"expected one or two recognition models, got {len(models)}")
        self._recs = [Recogniser(m, threads=threads) for m in models]
        self._max_candidates = max_candidates
        self._min_confidence = min_confidence
        self._min_width = min_plate_width

    def read(self, frame_bgr: np.ndarray) -> list[PlateReading]:
        """Readings of the plates in ``frame_bgr``, most confident first; [] if none."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR frame of shape (h, w, 3), got {frame_bgr.shape}")
        out: dict[str, PlateReading] = {}
        for cand in locate(frame_bgr, self._max_candidates, self._min_width):
            reading = self._read_candidate(cand)
            if reading is None or reading.confidence < self._min_confidence:
                continue
            if reading.text not in out or reading.confidence > out[reading.text].confidence:
                out[reading.text] = reading
        return sorted(out.values(), key=lambda r: -r.confidence)

    def evidence(self, cand: Candidate) -> Evidence | None:
        """The recogniser's evidence for a candidate, or None if no valid plate is read."""
        line = _text_line(cand)
        alphabet = self._recs[0].alphabet
        probs = [self._recs[0].probs(line)]
        first = constrained_decode(probs[0], alphabet)
        if first is None or normalise_plate(first.text) is None:
            # Most such crops are not plates (a badge, a grille). A plate only the second
            # model could read would be a disputed reading, capped at 0.5 anyway; skipping
            # it keeps the second model's cost off every non-plate candidate.
            return None
        if len(self._recs) == 1:
            return Evidence(text=first.text, char_probs=first.char_probs)
        probs.append(self._recs[1].probs(line))
        second = constrained_decode(probs[1], alphabet)
        agree = second is not None and second.text == first.text
        text = first.text
        if not agree and second is not None and normalise_plate(second.text) is not None:
            # Disputed: the text the two models together find likelier is the reading.
            score = {t: sum(ctc_log_likelihood(p, t, alphabet) for p in probs)
                     for t in (first.text, second.text)}
            text = max(sorted(score), key=lambda t: score[t])
        per_model = [forced_char_probs(p, text, alphabet) for p in probs]
        # Per character, the geometric mean of the two models' probabilities: one model's
        # doubt counts, without letting either veto a character both read (the minimum
        # held back 2-3 % more exact plates on seeds 7-12 and stopped no wrong one).
        char_probs = tuple(math.sqrt(a * b) for a, b in zip(*per_model, strict=True))
        return Evidence(text=text, char_probs=char_probs, agree=agree)

    def _read_candidate(self, cand: Candidate) -> PlateReading | None:
        ev = self.evidence(cand)
        if ev is None:
            return None
        return PlateReading(text=ev.text, color=cand.color, bbox=cand.bbox,
                            confidence=calibrate(ev))


def _text_line(cand: Candidate) -> np.ndarray:
    """The crop as one text line; a double-row plate's rows are laid side by side."""
    crop = cand.crop
    if cand.color != "yellow_double":
        h, w = crop.shape[:2]
        return crop[int(h * 0.06): int(h * 0.94), int(w * 0.015): int(w * 0.985)]
    h, w = crop.shape[:2]
    # Top row: province and office letter in 80 mm cells at 110-190 and 250-330 of 440 mm;
    # cutting out the gap between them gives the recogniser one tight line.
    row = crop[int(h * 0.04): int(h * 0.37)]
    first = row[:, int(w * 0.23): int(w * 0.45)]
    second = row[:, int(w * 0.55): int(w * 0.77)]
    bottom = crop[int(h * 0.38): int(h * 0.95), int(w * 0.03): int(w * 0.97)]
    th = bottom.shape[0]
    return np.hstack([_resize_h(first, th), _resize_h(second, th), bottom])


def _resize_h(img: np.ndarray, h: int) -> np.ndarray:
    w = max(1, int(round(img.shape[1] * h / img.shape[0])))
    return cv2.resize(img, (w, h))
