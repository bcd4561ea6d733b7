"""Labelled frame sets for recognition benchmarks: balanced over kinds and conditions."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_sim.camera.render import (
    CONDITION_TAGS,
    KINDS,
    Conditions,
    random_conditions,
    random_plate,
    render_frame,
)

__all__ = ["FrameSpec", "frame_specs", "write_frameset", "LABELS_CSV"]

LABELS_CSV = "labels.csv"
_FIELDS = ["file", "plate", "kind", "condition", "angle_deg", "roll_deg", "blur", "motion",
           "noise", "night", "dirt", "occlude", "scale", "shift", "timestamp", "glare", "clutter",
           "bbox", "seed"]


@dataclass(frozen=True)
class FrameSpec:
    plate: str | None
    kind: str | None
    conditions: Conditions
    seed: int


def frame_specs(count: int, seed: int, empty_every: int = 20) -> list[FrameSpec]:
    """``count`` frame specs cycling plate kinds and conditions; every ``empty_every``-th
    frame is an empty lane (0 = never). Same arguments, same specs."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(count):
        frame_seed = seed * 1_000_003 + i
        if empty_every and i % empty_every == empty_every - 1:
            specs.append(FrameSpec(None, None, random_conditions(rng, "clean"), frame_seed))
            continue
        kind = KINDS[i % len(KINDS)]
        tag = CONDITION_TAGS[(i // len(KINDS)) % len(CONDITION_TAGS)]
        specs.append(FrameSpec(random_plate(rng, kind), kind, random_conditions(rng, tag),
                               frame_seed))
    return specs


def write_frameset(out: Path, count: int, seed: int, *, empty_every: int = 20,
                   quality: int = 92) -> Path:
    """Render the set into ``out`` as ``NNNN_<plate>.jpg`` plus labels.csv; returns the CSV."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / LABELS_CSV
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_FIELDS)
        writer.writeheader()
        for i, spec in enumerate(frame_specs(count, seed, empty_every)):
            frame, label = render_frame(spec.plate, kind=spec.kind or "auto",
                                        conditions=spec.conditions, seed=spec.seed)
            name = f"{i:04d}_{spec.plate or 'none'}.jpg"
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for frame {i}")
            (out / name).write_bytes(buf.tobytes())
            writer.writerow({"file": name, **label.to_row()})
    return csv_path
