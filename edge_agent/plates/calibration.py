"""Map raw recogniser evidence to a calibrated confidence (probability the plate is exact).

The table below was fitted on simulator frames from a seed the benchmark does not use
(``scripts/bench_plates.py --calibrate`` prints the bins); see docs/plates.md. Raw score:
the weakest character's probability, shrunk when the beam margin to a rival text is small.
"""

from __future__ import annotations

import numpy as np

__all__ = ["raw_score", "calibrate", "CALIBRATION"]

#: (raw score, observed share exact) knots, monotonic; linear in between.
CALIBRATION: tuple[tuple[float, float], ...] = (
    # Fitted on 568 candidate readings of 600 frames (seeds 7 and 8): raw 0.6-0.8 was
    # right 25 of 28 times, 0.8-0.9 22 of 22, >= 0.9 495 of 495; knots are shrunk
    # towards caution where samples are few.
    (0.0, 0.0),
    (0.2, 0.1),
    (0.4, 0.35),
    (0.6, 0.75),
    (0.8, 0.9),
    (0.9, 0.96),
    (0.95, 0.985),
    (1.0, 0.995),
)


def raw_score(pmin: float, pmean: float, margin: float, shape: float) -> float:
    """Uncalibrated evidence in 0..1 that a reading is exact."""
    margin_factor = 1.0 - np.exp(-max(margin, 0.0) / 1.5)
    return float(np.clip(pmin * (0.5 + 0.5 * margin_factor) * (0.8 + 0.2 * shape), 0, 1))


def calibrate(pmin: float, pmean: float, margin: float, shape: float) -> float:
    xs, ys = zip(*CALIBRATION, strict=True)
    return float(np.interp(raw_score(pmin, pmean, margin, shape), xs, ys))
