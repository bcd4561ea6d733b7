"""Plate reading on real photographs (issue 11), from ../shared/plates-dev/.

The development data is not in the repository (README there: crops Apache-2.0, CCPD scenes
MIT); these tests fail, never skip, when it is missing. Scene labels were read by eye and
live in real_scenes.toml beside this file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.plates import PlateReader
from edge_agent.plates.special import SPECIAL_CAP
from firmware_sim.camera.render import SPECIAL_KINDS, random_conditions, random_plate, render_frame

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "plates-dev"
GATE = 0.9
LABELS = tomllib.loads((Path(__file__).parent / "real_scenes.toml").read_text("utf-8"))["scene"]


def _data(sub: str) -> Path:
    folder = DATA / sub
    if not folder.is_dir() or not any(folder.iterdir()):
        pytest.fail(f"real plate data missing: {folder} (the development set lives in "
                    "/work/shared/plates-dev; the tests read it as ../shared/plates-dev "
                    "from the repository root)")
    return folder


def _imread(path: Path) -> np.ndarray:
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot decode {path}"
    return img


@pytest.fixture(scope="module")
def reader() -> PlateReader:
    return PlateReader(threads=1)


def _crop_figures(reader: PlateReader) -> tuple[int, int, list[tuple[str, str, float]]]:
    files = sorted(_data("crops").iterdir())
    assert len(files) == 1000, f"expected the 1,000 real crops, found {len(files)}"
    top = gate = 0
    errors = []
    for path in files:
        r = reader.read_crop(_imread(path))
        if r is not None and r.text == path.stem:
            top += 1
            gate += r.confidence >= GATE
        elif r is not None:
            errors.append((path.stem, r.text, round(r.confidence, 3)))
    return top, gate, errors


@pytest.fixture(scope="module")
def crop_figures(reader: PlateReader) -> tuple[int, int, list[tuple[str, str, float]]]:
    return _crop_figures(reader)


def test_real_crops_read_exactly_without_a_confident_error(
        crop_figures: tuple[int, int, list[tuple[str, str, float]]]) -> None:
    top, gate, errors = crop_figures
    assert top >= 970, f"exact at top {top}/1000; misreads: {errors[:20]}"
    assert not [e for e in errors if e[2] >= GATE], \
        f"confident wrong readings: {[e for e in errors if e[2] >= GATE]}"
    # Measured 880/1000 at 0.9 (docs/plates.md); this guards against a regression.
    assert gate >= 870, f"exact at the gate threshold {gate}/1000"


@pytest.mark.xfail(strict=True, reason="issue 11 asks for >= 90 % of real crops at the gate "
                   "threshold; the refitted calibration reaches 88.0 % with no confident "
                   "error (the faint province character on 94x24 crops); see docs/plates.md")
def test_real_crops_reach_the_issue_11_gate_target(
        crop_figures: tuple[int, int, list[tuple[str, str, float]]]) -> None:
    assert crop_figures[1] >= 900


def _scene_figures(reader: PlateReader) -> tuple[int, int, list[tuple[str, str, str | None]]]:
    folder = _data("scenes")
    certain = [s for s in LABELS if s["certain"] and s["plate"]]
    exact, misses = 0, []
    for s in certain:
        res = reader.read(_imread(folder / s["file"]))
        if res and res[0].text == s["plate"]:
            exact += 1
        else:
            misses.append((s["file"], s["plate"], res[0].text if res else None))
            assert not res or res[0].confidence < GATE, \
                f"{s['file']}: confident wrong reading {res[0]} (label {s['plate']})"
    return exact, len(certain), misses


@pytest.fixture(scope="module")
def scene_figures(reader: PlateReader) -> tuple[int, int, list[tuple[str, str, str | None]]]:
    return _scene_figures(reader)


def test_real_scenes_standard_plates_read_without_a_confident_error(
        scene_figures: tuple[int, int, list[tuple[str, str, str | None]]]) -> None:
    exact, n, misses = scene_figures
    assert n >= 20
    # Measured 22/24 (docs/plates.md); this guards against a regression.
    assert exact >= n - 3, f"exact at top {exact}/{n}: {misses}"


@pytest.mark.xfail(strict=True, reason="issue 11 asks for >= 95 % of the labelled standard "
                   "plates at top; the reader reads 22/24 (91.7 %); see docs/plates.md")
def test_real_scenes_reach_the_issue_11_target(
        scene_figures: tuple[int, int, list[tuple[str, str, str | None]]]) -> None:
    exact, n, _ = scene_figures
    assert exact >= 0.95 * n


def test_real_scenes_without_a_plate_give_no_reading(reader: PlateReader) -> None:
    folder = _data("scenes")
    for s in LABELS:
        if not s["plate"]:
            res = reader.read(_imread(folder / s["file"]))
            assert not res, f"{s['file']} has no plate but read {res}"


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_the_learned_detector_finds_real_plates_at_three_scales(scale: float) -> None:
    # Colour cue off: the text detector alone must find the plate at every scale.
    reader = PlateReader(threads=1, colour_cue=False)
    folder = _data("scenes")
    names = ["ccpd_db1.jpg", "ccpd_fn4.jpg", "ccpd_fn5.jpg", "ccpd_rot0.jpg",
             "ccpd_rpnet_1.jpg", "ccpd_tilt4.jpg"]
    plates = {s["file"]: s["plate"] for s in LABELS}
    found = []
    for name in names:
        img = _imread(folder / name)
        img = cv2.resize(img, None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        res = reader.read(img)
        found.append(bool(res) and res[0].text == plates[name])
    assert sum(found) >= len(names) - 1, f"scale {scale}: read {found} of {names}"


def test_special_plates_never_come_back_as_a_confident_civil_reading(
        reader: PlateReader) -> None:
    rng = np.random.default_rng(11)
    seen = 0
    for i in range(20):
        kind = SPECIAL_KINDS[i % len(SPECIAL_KINDS)]
        text = random_plate(rng, kind)
        frame, _ = render_frame(text, kind=kind, conditions=random_conditions(rng, "clean"),
                                seed=1000 + i)
        res = reader.inspect(frame)
        for r in res.readings:
            assert r.confidence <= SPECIAL_CAP < GATE, f"{kind} {text} read as {r}"
            assert r.special is not None, f"{kind} {text} read as a civil plate {r}"
        seen += bool(res.readings) or bool(res.special)
    # Nearly every one is read as a special plate or reported as an unreadable one (a plate
    # not seen at all also goes to the operator: there is no reading).
    assert seen >= 18, f"only {seen}/20 special plates were recognised as special"
