"""Scale-free plate candidates from a learned text detector (issue 11).

The PP-OCRv4 text-detection model (DB, "differentiable binarisation") shipped inside the
``rapidocr-onnxruntime`` wheel finds lines of text at any size and in any colour. A plate is
a short line of 7-8 large characters (sometimes detected as two pieces either side of the
separator dot), so we merge side-by-side pieces of equal height, keep lines with a plate's
proportions, and cut each out of the full-resolution frame, squared up, with the plate's
margins around the characters. The recognisers and the plate grammar then decide which, if
any, is a plate (reader.py). Pure apart from the model: a frame in, candidates out.

The detector runs on a downscaled frame (long side 640 by default: 50 ms on one core for a
1280x720 frame) and, for large photos where nothing was read, over a second, finer level of
the pyramid in tiles; see docs/plates.md for the measurements behind these choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.plates.recognise import packaged_model

__all__ = ["DETECTORS", "TextDetector", "TextLine", "plate_quads"]

#: Text-detection models by name: (import package, distribution, file inside the package).
DETECTORS: dict[str, tuple[str, str, str]] = {
    "ppocr-v4-det": ("rapidocr_onnxruntime", "rapidocr-onnxruntime",
                     "models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocr-v6-det-small": ("rapidocr", "rapidocr", "models/PP-OCRv6_det_small.onnx"),
}

# ImageNet normalisation the PP-OCR detectors were trained with (applied to BGR as PaddleOCR
# itself does).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255
_BIN_THRESHOLD = 0.3  # probability above which a pixel is text (the model's training value)
_MIN_LINE_SCORE = 0.5  # mean probability inside a line for it to count
# DB predicts text regions shrunk towards their centre line; growing a region by
# area * ratio / perimeter restores the text's extent (the ratio PaddleOCR uses is 1.5-2).
_UNCLIP = 1.6


@dataclass(frozen=True)
class TextLine:
    """A detected line of text: its rotated box in frame pixels and mean probability."""

    center: tuple[float, float]
    size: tuple[float, float]  # width (along the text), height
    angle: float  # degrees, as cv2.minAreaRect, normalised so width is the long side
    score: float


class TextDetector:
    """The PP-OCR DB text detector on one CPU core."""

    def __init__(self, model: str = "ppocr-v4-det", threads: int = 1) -> None:
        import onnxruntime as ort

        if model not in DETECTORS:
            raise ValueError(f"unknown text-detection model {model!r}; choose one of "
                             f"{', '.join(DETECTORS)}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(packaged_model(model, *DETECTORS[model])),
                                             sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def lines(self, img: np.ndarray, scale: float) -> list[TextLine]:
        """Text lines in ``img`` (BGR) detected at ``scale``, in ``img``'s own pixels."""
        h, w = img.shape[:2]
        # The network needs sides that are multiples of 32.
        dh = max(32, int(round(h * scale / 32)) * 32)
        dw = max(32, int(round(w * scale / 32)) * 32)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(img, (dw, dh), interpolation=interp).astype(np.float32)
        x = ((small - _MEAN) / _STD).transpose(2, 0, 1)[None]
        prob = self._session.run(None, {self._input: x})[0][0, 0]
        return _lines_from_map(prob, w / dw, h / dh)


def _lines_from_map(prob: np.ndarray, sx: float, sy: float) -> list[TextLine]:
    bitmap = (prob > _BIN_THRESHOLD).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out: list[TextLine] = []
    for c in contours:
        if len(c) < 4:
            continue
        x, y, w, h = cv2.boundingRect(c)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [c - [x, y]], 1)
        score = float(prob[y: y + h, x: x + w][mask > 0].mean()) if mask.any() else 0.0
        if score < _MIN_LINE_SCORE:
            continue
        (cx, cy), (rw, rh), ang = cv2.minAreaRect(c)
        if min(rw, rh) < 2:
            continue
        area, perim = rw * rh, 2 * (rw + rh)
        d = area * _UNCLIP / perim
        rw, rh = rw + 2 * d, rh + 2 * d
        if rw < rh:
            rw, rh, ang = rh, rw, ang + 90
        if ang > 45:
            ang -= 180
        # Back to frame pixels (the map is at detector scale; x and y scale alike but for
        # the rounding to multiples of 32).
        out.append(TextLine(center=(cx * sx, cy * sy), size=(rw * sx, rh * sy), angle=ang,
                            score=score))
    return out


def _merge(lines: list[TextLine]) -> list[TextLine]:
    """Join pieces of one line: a plate is often detected as "皖A" and "73C39"."""
    merged = list(lines)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                m = _join(merged[i], merged[j])
                if m is not None:
                    merged[j] = m
                    del merged[i]
                    changed = True
                    break
            if changed:
                break
    return merged


def _join(a: TextLine, b: TextLine) -> TextLine | None:
    ha, hb = a.size[1], b.size[1]
    if max(ha, hb) > 1.4 * min(ha, hb) or abs(a.angle - b.angle) > 12:
        return None
    h = max(ha, hb)
    t = np.deg2rad((a.angle + b.angle) / 2)
    along = np.array([np.cos(t), np.sin(t)])
    across = np.array([-np.sin(t), np.cos(t)])
    d = np.subtract(b.center, a.center)
    if abs(float(d @ across)) > 0.45 * h:
        return None
    gap = abs(float(d @ along)) - (a.size[0] + b.size[0]) / 2
    if gap > 0.8 * h:
        return None
    pts = np.vstack([_corners(a), _corners(b)]).astype(np.float32)
    (cx, cy), (rw, rh), ang = cv2.minAreaRect(pts)
    if rw < rh:
        rw, rh, ang = rh, rw, ang + 90
    if ang > 45:
        ang -= 180
    return TextLine(center=(cx, cy), size=(rw, rh), angle=ang,
                    score=(a.score * a.size[0] + b.score * b.size[0]) / (a.size[0] + b.size[0]))


def _corners(line: TextLine) -> np.ndarray:
    return cv2.boxPoints((line.center, line.size, line.angle))


def plate_quads(lines: list[TextLine], *, min_height: float = 6.0
                ) -> list[tuple[np.ndarray, float, float]]:
    """Plate-shaped lines as (quad of the plate, score, text aspect), most plate-like first.

    The quad grows the text line to the plate's outline: the characters are 90 mm high on a
    140 mm plate and fill about 410 of its 440 mm, so the plate is about 1.45 x the text's
    height and 1.07 x its width (a little more is harmless; the recogniser sees margins).
    """
    out = []
    for line in _merge(lines):
        w, h = line.size
        if h < min_height:
            continue
        aspect = w / h
        # 7-8 characters at a plate's spacing: about 3.5-5.5 after unclipping; allow for
        # yaw (narrower) and merged neighbours (wider).
        if not 2.2 <= aspect <= 8.0:
            continue
        shape = max(0.0, 1 - abs(np.log(aspect / 4.3)))
        quad = cv2.boxPoints((line.center, (w * 1.07, h * 1.45), line.angle))
        out.append((_order(quad), float(0.5 * shape + 0.5 * line.score), aspect))
    out.sort(key=lambda q: -q[1])
    return out


def _order(pts: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left."""
    s, d = pts.sum(axis=1), np.diff(pts, axis=1)[:, 0]
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)],
                     pts[np.argmax(d)]], np.float32)
