"""Plate localisation with OpenCV colour and edge cues (no neural network).

Chinese plates are saturated blue, yellow or green rectangles with a dense row of
vertical strokes. We look for blobs of those colours at half resolution, keep the ones with
a plate's shape and stroke density, and cut each out of the full frame squared up by a
perspective warp. Pure: a frame in, candidate crops out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Candidate", "locate"]

# OpenCV hue (0..179) ranges and minimum saturation/value for plate backgrounds.
_COLOUR_RANGES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "blue": ((100, 90, 35), (128, 255, 255)),
    "yellow": ((14, 90, 50), (34, 255, 255)),
    "green": ((36, 45, 50), (88, 255, 255)),
}
_SINGLE_ASPECT = 440 / 140  # width/height of a single-row plate (green: 480/140)
_DOUBLE_ASPECT = 440 / 220
_SCALE = 0.5  # localise on a half-size frame: plates stay > 50 px wide
# Size of the squared-up crop handed to the recogniser (height 48 is the model's).
_CROP_H = 64


@dataclass(frozen=True)
class Candidate:
    """A plate-like region: its colour, box in the frame, and the squared-up crop."""

    color: str
    bbox: tuple[int, int, int, int]
    crop: np.ndarray  # BGR, squared up, height _CROP_H
    score: float  # how plate-like the region looks, 0..1 (shape, fill, strokes)


def _order(pts: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left."""
    s, d = pts.sum(axis=1), np.diff(pts, axis=1)[:, 0]
    return np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)],
                     pts[np.argmax(d)]], np.float32)


def _stroke_density(gray: np.ndarray) -> float:
    """Share of pixels with strong vertical edges: high for rows of characters."""
    if gray.size == 0:
        return 0.0
    sx = np.abs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    return float((sx > 120).mean())


def locate(frame: np.ndarray, max_candidates: int = 4, min_width: int = 90) -> list[Candidate]:
    """Plate-like regions of a BGR frame at least ``min_width`` pixels wide, most
    plate-like first. Like an ANPR camera's minimum plate width, the floor keeps distant
    signs and lamps from costing a recognition each."""
    small = cv2.resize(frame, None, fx=_SCALE, fy=_SCALE, interpolation=cv2.INTER_AREA)
    # Smooth first: sensor noise on the dark bumper otherwise reads as saturated colour.
    hsv = cv2.cvtColor(cv2.GaussianBlur(small, (5, 5), 0), cv2.COLOR_BGR2HSV)
    found: list[Candidate] = []
    for color, (lo, hi) in _COLOUR_RANGES.items():
        mask = cv2.inRange(hsv, np.array(lo, np.uint8), np.array(hi, np.uint8))
        # Close over the characters so a plate is one blob, then break thin bridges.
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                                cv2.getStructuringElement(cv2.MORPH_RECT, (9, 5)))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN,
                                cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            area = cv2.contourArea(c)
            if area < 250 or area > 20000:
                continue
            cand = _candidate(frame, c, color, area)
            if cand is not None and cand.bbox[2] >= min_width:
                found.append(cand)
    # Edge cue: rows of characters give dense vertical strokes even when the plate's colour
    # merges with a dim cab at night. Colour is then read from the region itself.
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    sx = cv2.convertScaleAbs(cv2.Sobel(cv2.GaussianBlur(gray, (3, 3), 0), cv2.CV_16S, 1, 0))
    _, edges = cv2.threshold(sx, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE,
                             cv2.getStructuringElement(cv2.MORPH_RECT, (15, 5)))
    edges = cv2.morphologyEx(edges, cv2.MORPH_OPEN,
                             cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        area = cv2.contourArea(c)
        if area < 250 or area > 20000:
            continue
        x, y, w, h = cv2.boundingRect(c)
        dominant = _dominant_colour(hsv[y: y + h, x: x + w])
        if dominant is None or any(_overlap(f.bbox, (2 * x, 2 * y, 2 * w, 2 * h)) > 0.5
                                for f in found):
            continue
        cand = _candidate(frame, c, dominant, area)
        if cand is not None and cand.bbox[2] >= min_width:
            found.append(cand)
    found.sort(key=lambda c: -c.score)
    return found[:max_candidates]


def _dominant_colour(hsv: np.ndarray) -> str | None:
    """The plate colour most pixels of a region have, or None if none is common enough."""
    best, share = None, 0.25
    for color, (lo, hi) in _COLOUR_RANGES.items():
        lo2 = (lo[0], max(40, lo[1] - 30), 25)
        m = cv2.inRange(hsv, np.array(lo2, np.uint8), np.array(hi, np.uint8))
        s = float((m > 0).mean()) if m.size else 0.0
        if s > share:
            best, share = color, s
    return best


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / max(1, min(a[2] * a[3], b[2] * b[3]))


def _candidate(frame: np.ndarray, contour: np.ndarray, color: str,
               area: float) -> Candidate | None:
    (cx, cy), (w, h), ang = cv2.minAreaRect(contour)
    if w < h:  # make width the long side
        w, h, ang = h, w, ang + 90
    if h < 8 or w < 30:
        return None
    aspect = w / h
    if not 1.4 <= aspect <= 5.5:
        return None
    fill = area / (w * h)
    if fill < 0.55:
        return None
    double = aspect < 2.45 and color == "yellow"
    if color == "green" and aspect < 2.6:
        # Only the saturated lower part of a gradient green plate shows in the mask:
        # grow the box upwards to the plate's full height.
        grow = w / (480 / 140) - h
        if grow > 0:
            a = np.deg2rad(ang)
            cx, cy = cx + np.sin(a) * grow / 2, cy - np.cos(a) * grow / 2
            h = w / (480 / 140)
    box = cv2.boxPoints(((cx, cy), (w * 1.04, h * 1.08), ang)) / _SCALE
    quad = _order(box)
    out_w = int(_CROP_H * (_DOUBLE_ASPECT if double else _SINGLE_ASPECT))
    M = cv2.getPerspectiveTransform(
        quad, np.array([[0, 0], [out_w, 0], [out_w, _CROP_H], [0, _CROP_H]], np.float32))
    crop = cv2.warpPerspective(frame, M, (out_w, _CROP_H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
    strokes = _stroke_density(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    if strokes < 0.03:
        return None
    x0, y0 = np.maximum(quad.min(axis=0), 0)
    x1, y1 = quad.max(axis=0)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    target = _DOUBLE_ASPECT if double else _SINGLE_ASPECT
    shape_score = max(0.0, 1 - abs(np.log(aspect / target)))
    score = float(np.clip(0.4 * shape_score + 0.3 * fill + 2.0 * min(strokes, 0.15), 0, 1))
    return Candidate(color="yellow_double" if double else color,
                     bbox=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)), crop=crop,
                     score=score)
