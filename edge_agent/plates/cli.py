"""``coalgate plates``: read plates in images, benchmark on a labelled folder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Read Chinese licence plates from camera frames", no_args_is_help=True)


def _load(path: Path) -> object:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if img is None:
        typer.echo(f"error: cannot read image {path}: missing or not an image "
                   "(JPEG, PNG, BMP)", err=True)
        raise typer.Exit(1)
    return img


@app.command()
def read(
    images: Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, BMP)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image")] = False,
) -> None:
    """Print the plates read in each image: text, colour, confidence, box.

    Example: coalgate plates read gate-cam-0001.jpg gate-cam-0002.jpg
    """
    from edge_agent.plates import PlateReader

    reader = PlateReader()
    for path in images:
        result = reader.inspect(_load(path))  # type: ignore[arg-type]
        readings = result.readings
        if as_json:
            typer.echo(json.dumps({"file": str(path), "readings": [
                {"text": r.text, "color": r.color, "confidence": round(r.confidence, 3),
                 "bbox": list(r.bbox), "special": r.special} for r in readings],
                "unreadable_special": [{"kind": s.kind, "color": s.color,
                                        "bbox": list(s.bbox)} for s in result.special]},
                ensure_ascii=False))
            continue
        for r in readings:
            x, y, w, h = r.bbox
            note = f"\tspecial plate ({r.special}): operator" if r.special else ""
            typer.echo(f"{path}\t{r.text}\t{r.color}\t{r.confidence:.2f}\t{x},{y},{w},{h}{note}")
        for s in result.special:
            x, y, w, h = s.bbox
            typer.echo(f"{path}\t-\tunreadable special plate ({s.kind}, {s.color})"
                       f"\t-\t{x},{y},{w},{h}")
        if not readings and not result.special:
            typer.echo(f"{path}\t-\tno plate")


@app.command()
def bench(
    folder: Annotated[Path, typer.Argument(help="Labelled folder (labels.csv or names)")],
    threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Confidence at which a reading counts as the gate's answer")
    ] = 0.9,
    errors: Annotated[bool, typer.Option(help="List every error case")] = True,
    labels: Annotated[Path | None, typer.Option(
        help="Scene labels as TOML ([[scene]] file, plate, certain, condition), e.g. "
             "tests/plates/real_scenes.toml")] = None,
    crops: Annotated[bool, typer.Option(
        help="The images are tight crops of single-row plates (read without localising)")
    ] = False,
) -> None:
    """Accuracy per condition and p50/p99 latency on a labelled folder.

    Labels come from FOLDER/labels.csv (columns file, plate, condition) or from file names
    NNNN_<plate>.jpg (NNNN_none.jpg for an empty lane), as `coalgate sim frames` writes.

    Examples: coalgate sim frames /tmp/plates --count 600 && coalgate plates bench /tmp/plates ;
    coalgate plates bench ../shared/plates-dev/crops --crops ;
    coalgate plates bench ../shared/plates-dev/scenes --labels tests/plates/real_scenes.toml
    """
    import numpy as np

    from edge_agent.plates import PlateReader
    from edge_agent.plates.evaluate import (
        LabelError,
        Outcome,
        load_labels,
        load_scene_labels,
        score,
    )

    if not folder.is_dir():
        typer.echo(f"error: {folder} is not a folder; make one with `coalgate sim frames`",
                   err=True)
        raise typer.Exit(1)
    try:
        frames = load_scene_labels(labels, folder) if labels else load_labels(folder)
    except LabelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    reader = PlateReader()
    outcomes = []
    for f in frames:
        img = _load(f.path)
        t0 = time.perf_counter()
        if crops:
            one = reader.read_crop(img)  # type: ignore[arg-type]
            readings = [one] if one is not None else []
        else:
            readings = reader.read(img)  # type: ignore[arg-type]
        outcomes.append(Outcome(f, tuple(readings), time.perf_counter() - t0))
    report = score(outcomes, threshold)
    secs = np.array([o.seconds for o in outcomes]) * 1000
    report["latency_ms"] = {"p50": round(float(np.percentile(secs, 50)), 1),
                            "p99": round(float(np.percentile(secs, 99)), 1)}
    if not errors:
        report.pop("errors")
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
