"""Scoring plate readings against labels: accuracy per condition, confident errors apart.

Pure: labelled outcomes in, a report dict out. A reading counts as *confident* when its
confidence is at or above the gate's threshold; a confident wrong plate is the failure that
matters (it lets a plate swap through), so it is counted apart from a missing reading
(which only sends the truck to the operator).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.plates.grammar import normalise_plate
from edge_agent.plates.reading import PlateReading

__all__ = ["LabelledFrame", "Outcome", "load_labels", "load_scene_labels", "score", "LabelError"]


class LabelError(ValueError):
    """A labelled folder has no usable labels."""


@dataclass(frozen=True)
class LabelledFrame:
    path: Path
    plate: str | None  # None: no plate in the frame
    condition: str = "unknown"


@dataclass(frozen=True)
class Outcome:
    frame: LabelledFrame
    readings: tuple[PlateReading, ...]
    seconds: float


_NAME = re.compile(r"^(?:\d+_)?(?P<plate>[^_.]+)")


def load_scene_labels(labels: Path, folder: Path) -> list[LabelledFrame]:
    """Labels of real photos from a TOML file of ``[[scene]]`` tables (file, plate,
    certain, condition; see tests/plates/real_scenes.toml). A scene whose plate the
    labeller could not read with certainty gets the condition "uncertain", so it is
    reported apart; plate "" is a photo with no plate."""
    import tomllib

    try:
        scenes = tomllib.loads(labels.read_text(encoding="utf-8")).get("scene", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LabelError(f"{labels}: cannot read scene labels ({exc})") from exc
    if not scenes:
        raise LabelError(f"{labels}: no [[scene]] tables (file, plate, certain, condition)")
    out = []
    for sc in scenes:
        plate = sc.get("plate") or None
        cond = sc.get("condition", "unknown") if sc.get("certain", True) else "uncertain"
        out.append(LabelledFrame(folder / sc["file"], plate, cond))
    return out


def load_labels(folder: Path) -> list[LabelledFrame]:
    """Labels from ``folder/labels.csv`` (columns file, plate[, condition]) or else from
    file names ``[NNNN_]<plate>.jpg`` (``none`` for an empty lane)."""
    csv_path = folder / "labels.csv"
    if csv_path.exists():
        with csv_path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "file" not in rows[0] or "plate" not in rows[0]:
            raise LabelError(f"{csv_path}: expected a header with columns 'file' and 'plate'")
        return [LabelledFrame(folder / r["file"], r["plate"] or None,
                              r.get("condition") or "unknown") for r in rows]
    frames = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp"):
            continue
        m = _NAME.match(p.stem)
        name = m.group("plate") if m else ""
        plate = None if name.lower() == "none" else normalise_plate(name)
        if plate is None and name.lower() != "none":
            raise LabelError(f"{p}: file name does not carry a valid plate; name files "
                             "NNNN_<plate>.jpg (or NNNN_none.jpg) or add labels.csv")
        frames.append(LabelledFrame(p, plate))
    if not frames:
        raise LabelError(f"{folder}: no images (.jpg/.png) found")
    return frames


def score(outcomes: list[Outcome], threshold: float) -> dict[str, Any]:
    """Accuracy per condition and overall; errors listed; confident wrongs apart."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    errors: list[dict[str, Any]] = []
    for o in outcomes:
        top = o.readings[0] if o.readings else None
        read = top.text if top and top.confidence >= threshold else None
        cond = o.frame.condition if o.frame.plate else "empty_lane"
        bucket = per[cond]
        bucket["frames"] += 1
        if o.frame.plate is None:
            if read is not None:
                bucket["false_plate"] += 1
                errors.append({"file": o.frame.path.name, "truth": None, "read": read,
                               "confidence": round(top.confidence, 3) if top else None})
            else:
                bucket["correct"] += 1
            continue
        if read == o.frame.plate:
            bucket["correct"] += 1
            continue
        kind = "no_reading" if read is None else "wrong_confident"
        bucket[kind] += 1
        errors.append({"file": o.frame.path.name, "truth": o.frame.plate, "kind": kind,
                       "read": top.text if top else None,
                       "confidence": round(top.confidence, 3) if top else None})
    plates = [o for o in outcomes if o.frame.plate]
    total = {k: sum(b.get(k, 0) for c, b in per.items() if c != "empty_lane")
             for k in ("frames", "correct", "no_reading", "wrong_confident")}
    n = max(1, total["frames"])
    return {
        "threshold": threshold,
        "plate_frames": len(plates),
        "accuracy": round(total["correct"] / n, 4),
        "wrong_confident": total["wrong_confident"],
        "wrong_confident_rate": round(total["wrong_confident"] / n, 4),
        "no_reading": total["no_reading"],
        "per_condition": {c: {**b, "accuracy": round(b["correct"] / max(1, b["frames"]), 4)}
                          for c, b in sorted(per.items())},
        "errors": errors,
    }
