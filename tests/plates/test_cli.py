import json
from pathlib import Path

import cv2
from typer.testing import CliRunner

from edge_agent.plates.cli import app
from firmware_sim.camera.frameset import write_frameset
from firmware_sim.camera.render import Conditions, render_frame


def test_read_prints_plate_and_no_plate(tmp_path: Path) -> None:
    frame, _ = render_frame("陕K8A3B2", kind="blue", conditions=Conditions(), seed=4)
    empty, _ = render_frame(None, seed=4)
    cv2.imwrite(str(tmp_path / "a.jpg"), frame)
    cv2.imwrite(str(tmp_path / "b.jpg"), empty)
    res = CliRunner().invoke(app, ["read", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].split("\t")[1:3] == ["陕K8A3B2", "blue"]
    assert lines[1].endswith("no plate")
    res = CliRunner().invoke(app, ["read", "--json", str(tmp_path / "a.jpg")])
    assert json.loads(res.output)["readings"][0]["text"] == "陕K8A3B2"


def test_read_missing_file_says_which(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["read", str(tmp_path / "nope.jpg")])
    assert res.exit_code == 1
    assert "nope.jpg" in res.output


def test_bench_reports_accuracy_and_latency(tmp_path: Path) -> None:
    write_frameset(tmp_path, 12, seed=77, empty_every=6)
    res = CliRunner().invoke(app, ["bench", str(tmp_path), "--threshold", "0.5"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["plate_frames"] == 10
    assert rep["accuracy"] >= 0.7
    assert rep["latency_ms"]["p50"] > 0
    assert "empty_lane" in rep["per_condition"]


def test_bench_on_unlabelled_folder_explains(tmp_path: Path) -> None:
    (tmp_path / "IMG_0001.jpg").write_bytes(b"x")
    res = CliRunner().invoke(app, ["bench", str(tmp_path)])
    assert res.exit_code == 1
    assert "labels.csv" in res.output


def test_read_says_unreadable_or_special_for_a_police_plate(tmp_path: Path) -> None:
    frame, _ = render_frame("陕K1234警", kind="police", conditions=Conditions(), seed=5)
    cv2.imwrite(str(tmp_path / "p.jpg"), frame)
    res = CliRunner().invoke(app, ["read", str(tmp_path / "p.jpg")])
    assert res.exit_code == 0, res.output
    assert "special plate" in res.output, res.output


def test_bench_on_real_scenes_with_toml_labels(tmp_path: Path) -> None:
    scenes = Path(__file__).resolve().parents[2].parent / "shared" / "plates-dev" / "scenes"
    assert scenes.is_dir(), f"real plate data missing: {scenes}"
    labels = tmp_path / "labels.toml"
    labels.write_text('[[scene]]\nfile = "ccpd_fn5.jpg"\nplate = "浙G857PM"\ncertain = true\n'
                      'condition = "far_near"\n\n[[scene]]\nfile = "ccpd_np1.jpg"\nplate = ""\n'
                      'certain = true\ncondition = "no_plate"\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["bench", str(scenes), "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["plate_frames"] == 1 and rep["accuracy"] == 1.0, rep
