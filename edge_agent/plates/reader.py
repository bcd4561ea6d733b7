"""PlateReader: frame in, plate readings out. Localise (text detector + colour cues), recognise.

Each crop is read by two recognisers of different generations (PP-OCRv4 mobile, PP-OCRv6
small). Each decodes on its own under the plate grammar; the text with the larger summed
log-likelihood under both models wins, and whether both decoded the same text is evidence
for the calibration: two models trained apart rarely make the same mistake, while either
alone is sometimes confidently wrong (Q read as 0, a province character under blur).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from edge_agent.plates.calibration import Evidence, calibrate
from edge_agent.plates.detect import TextDetector, TextLine, plate_quads
from edge_agent.plates.grammar import normalise_plate
from edge_agent.plates.locate import _CROP_H, Candidate, locate
from edge_agent.plates.reading import FrameResult, PlateReading, SpecialPlate
from edge_agent.plates.recognise import (
    Recogniser,
    constrained_decode,
    ctc_log_likelihood,
    forced_char_probs,
)
from edge_agent.plates.special import SPECIAL_CAP, plate_colour, special_kind

__all__ = ["PlateReader", "crop_candidate"]


class PlateReader:
    """Reads Chinese licence plates in BGR frames on one CPU core.

    Candidates come from a learned text detector run over a small scale pyramid
    (detect.py) and from the colour/edge cues (locate.py); the recognisers and the plate
    grammar decide which candidates are plates.

    ``min_confidence`` drops readings below it (0 keeps every grammar-valid reading);
    ``min_plate_width`` is the narrowest plate, in frame pixels, worth reading (40 by
    default: arbitrary photos; a gate camera's mounting gives a tighter figure).
    ``plate_width`` is the expected plate width in frame pixels, when the camera is fixed:
    the detector then runs at the scale that suits it. ``roi`` (x, y, w, h) limits the
    search to a region of the frame. ``detector=None`` uses the colour/edge cues alone
    (the reader before issue 11); ``colour_cue=False`` the text detector alone.
    """

    def __init__(self, *, threads: int = 1, max_candidates: int = 5,
                 min_confidence: float = 0.05, min_plate_width: int = 40,
                 models: tuple[str, ...] = ("ppocr-v4-mobile", "ppocr-v6-small"),
                 detector: str | None = "ppocr-v4-det", det_long_side: int = 640,
                 plate_width: int | None = None,
                 roi: tuple[int, int, int, int] | None = None,
                 colour_cue: bool = True) -> None:
        if not 1 <= len(models) <= 2:
            raise ValueError(f"expected one or two recognition models, got {len(models)}")
        self._recs = [Recogniser(m, threads=threads) for m in models]
        self._det = TextDetector(detector, threads=threads) if detector else None
        self._det_long = det_long_side
        self._plate_width = plate_width
        self._roi = roi
        self._colour_cue = colour_cue
        self._max_candidates = max_candidates
        self._min_confidence = min_confidence
        self._min_width = min_plate_width

    def read(self, frame_bgr: np.ndarray) -> list[PlateReading]:
        """Readings of the plates in ``frame_bgr``, most confident first; [] if none."""
        return self.inspect(frame_bgr).readings

    def inspect(self, frame_bgr: np.ndarray) -> FrameResult:
        """Readings, plus special plates seen that could not be read (docs/plates.md)."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR frame of shape (h, w, 3), got {frame_bgr.shape}")
        ox, oy = 0, 0
        frame = frame_bgr
        if self._roi is not None:
            x, y, w, h = self._roi
            frame = frame_bgr[max(0, y): y + h, max(0, x): x + w]
            ox, oy = max(0, x), max(0, y)
            if frame.size == 0:
                raise ValueError(f"region of interest {self._roi} lies outside the "
                                 f"{frame_bgr.shape[1]}x{frame_bgr.shape[0]} frame; fix "
                                 "[camera] roi in the site config")
        out: dict[str, PlateReading] = {}
        specials: list[SpecialPlate] = []
        # Cheapest cue first: the colour/edge cue costs ~15 ms and finds a clean gate plate;
        # the text detector (~50 ms) runs when it read nothing confidently; the finer
        # pyramid level only for large photos in which nothing was read at all.
        for stage in ("colour", "detector", "fine"):
            if stage == "fine" and (out or specials):
                break
            # A region the colour cue cut badly may still be read from the detector's cut,
            # so stages are not de-duplicated against each other.
            done = False
            for cand in self._candidates(frame, stage)[: self._max_candidates]:
                reading, special = self._read_candidate(cand)
                if special is not None and reading is None:
                    specials.append(_shift_special(special, ox, oy))
                if reading is None or reading.confidence < self._min_confidence:
                    continue
                reading = _shift(reading, ox, oy)
                if reading.text not in out or reading.confidence > out[reading.text].confidence:
                    out[reading.text] = reading
                if reading.confidence >= _EARLY_EXIT and reading.special is None:
                    # A plate both recognisers agree on: the gate has its answer; reading
                    # more candidates would only spend the latency budget.
                    done = True
                    break
            if done:
                break
        readings = sorted(out.values(), key=lambda r: -r.confidence)
        return FrameResult(readings=readings, special=specials)

    def _candidates(self, frame: np.ndarray, stage: str) -> list[Candidate]:
        """Plate candidates of one stage, most plate-like first."""
        h, w = frame.shape[:2]
        long_side = max(h, w)
        found: list[Candidate] = []
        if stage == "colour" and self._colour_cue:
            # Colour/edge cues at the scale they were tuned for (1280 px wide frames).
            norm = 1280 / long_side
            img = frame if abs(norm - 1) < 0.05 else cv2.resize(
                frame, None, fx=norm, fy=norm,
                interpolation=cv2.INTER_AREA if norm < 1 else cv2.INTER_LINEAR)
            for c in locate(img, 3, max(20, int(self._min_width * norm))):
                x, y, bw, bh = (int(round(v / norm)) for v in c.bbox)
                found.append(Candidate(c.color, (x, y, bw, bh), c.crop, c.score))
        elif stage == "detector" and self._det is not None:
            scale = self._det_long / long_side
            if self._plate_width:
                # Put the expected plate at about 110 px wide for the detector.
                scale = 110 / self._plate_width
            if min(h, w) * scale < 256:
                # Small images are enlarged: the detector needs characters of ~8 px.
                scale = 256 / min(h, w)
            found += self._from_lines(frame, self._det.lines(frame, min(scale, 4.0)))
        elif stage == "fine" and self._det is not None \
                and long_side > 2 * self._det_long and not self._plate_width:
            # Finer level of the pyramid for large photos: twice the resolution, in tiles
            # of the detector's usual size, only when the coarse level read nothing.
            scale = 2 * self._det_long / long_side
            tile = int(self._det_long / scale)
            step = int(tile * 0.85)
            for ty in range(0, max(1, h - tile // 6), step):
                for tx in range(0, max(1, w - tile // 6), step):
                    sub = frame[ty: ty + tile, tx: tx + tile]
                    for c in self._from_lines(sub, self._det.lines(sub, scale)):
                        x, y, bw, bh = c.bbox
                        found.append(Candidate(c.color, (x + tx, y + ty, bw, bh), c.crop,
                                               c.score))
        found = [c for c in found if c.bbox[2] >= self._min_width]
        found.sort(key=lambda c: -c.score)
        return found

    def _from_lines(self, frame: np.ndarray, lines: list[TextLine]) -> list[Candidate]:
        out = []
        for quad, score, _aspect in plate_quads(lines):
            crop = _warp(frame, quad)
            x0, y0 = np.maximum(quad.min(axis=0), 0)
            x1, y1 = quad.max(axis=0)
            x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
            bbox = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
            out.append(Candidate(plate_colour(crop), bbox, crop, score))
        return out

    def read_crop(self, crop_bgr: np.ndarray) -> PlateReading | None:
        """The reading of a tight crop of one single-row plate (an ANPR camera's plate
        image, or a test crop), or None when no valid plate is read."""
        return self._read_candidate(crop_candidate(crop_bgr))[0]

    def evidence(self, cand: Candidate) -> Evidence | None:
        """The recogniser's evidence for a candidate, or None if no valid plate is read."""
        return self._evidence(_text_line(cand), _max_len(cand.color))[0]

    def _evidence(self, line: np.ndarray, max_len: int = 8
                  ) -> tuple[Evidence | None, np.ndarray]:
        alphabet = self._recs[0].alphabet
        probs = [self._recs[0].probs(line)]
        first = constrained_decode(probs[0], alphabet, max_len=max_len)
        if first is None or normalise_plate(first.text) is None:
            # Most such crops are not plates (a badge, a grille). A plate only the second
            # model could read would be a disputed reading, capped at 0.5 anyway; skipping
            # it keeps the second model's cost off every non-plate candidate.
            return None, probs[0]
        if len(self._recs) == 1:
            return Evidence(text=first.text, char_probs=first.char_probs), probs[0]
        probs.append(self._recs[1].probs(line))
        second = constrained_decode(probs[1], alphabet, max_len=max_len)
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
        rival = (not agree and second is not None
                 and normalise_plate(second.text) is not None)
        if agree:
            serial_agree = True
        elif second is not None:
            serial_agree = second.text[1:] == text[1:]
        else:
            # The second model decoded no valid plate; did it read the characters after the
            # province the same way (its province is often an M or missing on small crops)?
            serial_agree = _greedy(probs[1], alphabet).endswith(text[1:])
        return Evidence(text=text, char_probs=char_probs, agree=agree, rival=rival,
                        serial_agree=serial_agree), probs[0]

    def _read_candidate(self, cand: Candidate
                        ) -> tuple[PlateReading | None, SpecialPlate | None]:
        ev, probs = self._evidence(_text_line(cand), _max_len(cand.color))
        kind = special_kind(ev.text if ev is not None else None, cand.color,
                            _greedy(probs, self._recs[0].alphabet))
        if ev is None:
            if kind is None:
                return None, None
            return None, SpecialPlate(kind=kind, color=cand.color, bbox=cand.bbox)
        conf = calibrate(ev)
        if kind is not None:
            # Never a confident civil reading of a special plate: the operator decides.
            conf = min(conf, SPECIAL_CAP)
        return PlateReading(text=ev.text, color=cand.color, bbox=cand.bbox,
                            confidence=conf, special=kind), None


def crop_candidate(crop_bgr: np.ndarray) -> Candidate:
    """A tight single-row plate crop as a reader candidate (squared up to _CROP_H high)."""
    h, w = crop_bgr.shape[:2]
    crop = cv2.resize(crop_bgr, (max(16, int(round(_CROP_H * w / h))), _CROP_H),
                      interpolation=cv2.INTER_LINEAR if h < _CROP_H else cv2.INTER_AREA)
    return Candidate(plate_colour(crop), (0, 0, w, h), crop, 1.0)


#: A reading this confident ends the search of a frame (both recognisers agree).
_EARLY_EXIT = 0.95


def _max_len(color: str) -> int:
    """Only green plates (new energy) have 8 characters; a double-row plate has 7."""
    return 8 if color in ("green", "unknown") else 7


def _greedy(probs: np.ndarray, alphabet: str) -> str:
    """Best-path CTC text over the plate alphabet, grammar or not (special markers)."""
    best = probs.argmax(axis=1)
    out, prev = [], 0
    for k in best:
        if k != prev and k != 0:
            out.append(alphabet[k - 1])
        prev = int(k)
    return "".join(out)


def _warp(frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad squared up to a crop _CROP_H high with the quad's own proportions."""
    w = float(np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    h = float(np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    out_w = max(16, int(_CROP_H * w / max(h, 1.0)))
    M = cv2.getPerspectiveTransform(
        quad, np.array([[0, 0], [out_w, 0], [out_w, _CROP_H], [0, _CROP_H]], np.float32))
    return cv2.warpPerspective(frame, M, (out_w, _CROP_H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over the smaller box."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / max(1, min(a[2] * a[3], b[2] * b[3]))


def _shift(r: PlateReading, dx: int, dy: int) -> PlateReading:
    if not dx and not dy:
        return r
    x, y, w, h = r.bbox
    return replace(r, bbox=(x + dx, y + dy, w, h))


def _shift_special(s: SpecialPlate, dx: int, dy: int) -> SpecialPlate:
    x, y, w, h = s.bbox
    return replace(s, bbox=(x + dx, y + dy, w, h))


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
