"""``coalgate sim frames``: render a labelled plate image set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from firmware_sim.camera.render import FontMissingError


def frames(
    out: Annotated[Path, typer.Argument(help="Folder to write the frames and labels.csv into")],
    count: Annotated[int, typer.Option(min=1, help="Number of frames")] = 600,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same set")] = 42,
    empty_every: Annotated[int, typer.Option(
        min=0, help="Every Nth frame is an empty lane (0: none)")] = 20,
    quality: Annotated[int, typer.Option(min=30, max=100, help="JPEG quality")] = 92,
) -> None:
    """Render a labelled set of 1280x720 gate-camera frames with Chinese plates.

    Frames cycle through blue, yellow, green new-energy and yellow double-row plates and
    through the conditions clean, angle (up to 25°), blur, noise, night, dirt and mixed.
    Labels go into the file names (NNNN_<plate>.jpg) and OUT/labels.csv.

    Example: coalgate sim frames /tmp/plates --count 600 --seed 42
    """
    from firmware_sim.camera.frameset import write_frameset

    try:
        csv_path = write_frameset(out, count, seed, empty_every=empty_every, quality=quality)
    except FontMissingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot write frames to {out}: {exc.strerror}; choose a writable "
                   "folder", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {count} frames and {csv_path}")
