"""The simulated camera: rendering, HTTP snapshot/MJPEG, ANPR push, frame folders."""

import csv
import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from firmware_sim.camera.cli import frames
from firmware_sim.camera.render import KINDS, Conditions, render_frame, render_plate
from firmware_sim.camera.server import CameraServer


def test_render_is_deterministic_and_sized() -> None:
    cond = Conditions(angle_deg=20, blur=1.0, noise=10, dirt=0.4, night=True)
    a, la = render_frame("陕K8A3B2", conditions=cond, seed=5)
    b, lb = render_frame("陕K8A3B2", conditions=cond, seed=5)
    c, _ = render_frame("陕K8A3B2", conditions=cond, seed=6)
    assert a.shape == (720, 1280, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_plate_kinds_have_their_colours(kind: str) -> None:
    text = "蒙BD12345" if kind == "green" else "蒙B12345"
    img = render_plate(text, kind)  # type: ignore[arg-type]
    hue = np.median(cv2.cvtColor(img, cv2.COLOR_BGR2HSV)[..., 0])
    expected = {"blue": (100, 128), "yellow": (14, 34), "yellow_double": (14, 34),
                "green": (36, 88)}[kind]
    assert expected[0] <= hue <= expected[1]
    assert img.shape[0] == (440 if kind == "yellow_double" else 280)


def test_label_box_lies_on_the_plate() -> None:
    frame, label = render_frame("晋A52188", kind="blue", conditions=Conditions(), seed=1)
    assert label.bbox is not None
    x, y, w, h = label.bbox
    assert 120 < w < 300 and 0 <= x and x + w <= 1280 and y + h <= 720
    hsv = cv2.cvtColor(frame[y: y + h, x: x + w], cv2.COLOR_BGR2HSV)
    assert np.mean((hsv[..., 0] > 100) & (hsv[..., 0] < 128)) > 0.4  # mostly plate blue


def test_angle_narrows_the_plate() -> None:
    _, straight = render_frame("晋A52188", conditions=Conditions(), seed=1)
    _, turned = render_frame("晋A52188", conditions=Conditions(angle_deg=25), seed=1)
    assert turned.bbox and straight.bbox and turned.bbox[2] < straight.bbox[2]


def test_empty_lane_has_no_label_box() -> None:
    _, label = render_frame(None, seed=2)
    assert label.plate is None and label.bbox is None


class _Sink(BaseHTTPRequestHandler):
    received: list[dict] = []
    done = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        type(self).done.set()

    def log_message(self, *args: object) -> None:
        pass


def test_server_snapshot_mjpeg_and_anpr_push() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    cam = CameraServer(seed=3).start()
    try:
        urls = cam.urls
        with urllib.request.urlopen(urls["snapshot"], timeout=5) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (720, 1280, 3)

        cam.enable_anpr_push(f"http://127.0.0.1:{sink.server_address[1]}/push")
        cam.show("陕K8A3B2", plate_kind="yellow")
        assert _Sink.done.wait(5)
        plate = _Sink.received[0]["AlarmInfoPlate"]["result"]["PlateResult"]
        assert plate["license"] == "陕K8A3B2" and plate["colorType"] == 2

        with urllib.request.urlopen(urls["label"], timeout=5) as resp:
            assert json.loads(resp.read())["plate"] == "陕K8A3B2"

        with urllib.request.urlopen(urls["mjpeg"], timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            parts = 0
            buf = b""
            while parts < 2:
                buf += resp.read1(65536)
                while b"\xff\xd9" in buf and b"\xff\xd8" in buf:
                    start = buf.index(b"\xff\xd8")
                    end = buf.index(b"\xff\xd9", start) + 2
                    jpg = cv2.imdecode(np.frombuffer(buf[start:end], np.uint8), 1)
                    assert jpg is not None and jpg.shape == (720, 1280, 3)
                    parts += 1
                    buf = buf[end:]
        port = int(urls["snapshot"].split(":")[2].split("/")[0])
    finally:
        cam.stop()
        sink.shutdown()
        sink.server_close()
    with pytest.raises(OSError):  # the port is released
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert cam.push_errors == []


def test_push_to_a_dead_receiver_is_recorded_not_raised() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    cam = CameraServer(seed=1)
    cam.enable_anpr_push(f"http://127.0.0.1:{dead}/push")
    cam.show("晋A52188")
    cam.stop()
    assert len(cam.push_errors) == 1 and "晋A52188" in cam.push_errors[0]


def test_sim_frames_cli_writes_a_labelled_folder(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(frames)
    out = tmp_path / "set"
    res = CliRunner().invoke(app, [str(out), "--count", "8", "--seed", "9",
                                   "--empty-every", "4"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "labels.csv").open(encoding="utf-8")))
    assert len(rows) == 8
    assert [r["plate"] == "" for r in rows] == [i % 4 == 3 for i in range(8)]
    for r in rows:
        assert (out / r["file"]).exists()
        assert r["file"].endswith(f"_{r['plate'] or 'none'}.jpg")
    assert {r["kind"] for r in rows if r["plate"]} <= set(KINDS)


def test_frames_of_a_standing_truck_differ_only_by_sensor_and_shake() -> None:
    cond = Conditions(noise=6)
    a, la = render_frame("陕K8A3B2", conditions=cond, seed=5, camera_seed=1)
    b, lb = render_frame("陕K8A3B2", conditions=cond, seed=5, camera_seed=2)
    again, _ = render_frame("陕K8A3B2", conditions=cond, seed=5, camera_seed=1)
    assert np.array_equal(a, again)
    assert not np.array_equal(a, b)
    assert la.quad and lb.quad
    shift = np.abs(np.array(la.quad) - np.array(lb.quad)).max()
    assert 0 < shift <= 2.0  # each frame shakes by at most 1 px
    # Same scene: the frames agree closely away from per-pixel noise.
    diff = np.abs(a.astype(int) - b.astype(int)).mean()
    other_scene, _ = render_frame("陕K8A3B2", conditions=cond, seed=6, camera_seed=1)
    assert diff < np.abs(a.astype(int) - other_scene.astype(int)).mean() / 3


def _snapshot(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=5) as resp:
        img = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return np.asarray(img)


def test_snapshots_are_fresh_exposures_of_the_same_truck() -> None:
    cam = CameraServer(seed=4, fps=20).start()
    still = CameraServer(seed=4, fps=20, live=False).start()
    try:
        for c in (cam, still):
            c.show("陕K8A3B2", plate_kind="blue", conditions=Conditions(noise=10))
        first = _snapshot(cam.urls["snapshot"])
        time.sleep(0.06)  # one frame period at 20 fps
        second = _snapshot(cam.urls["snapshot"])
        assert not np.array_equal(first, second)  # new sensor noise
        # ...of the same scene: far closer to each other than to another truck's frame.
        cam.show("晋A52188", plate_kind="yellow", conditions=Conditions(noise=10))
        other = _snapshot(cam.urls["snapshot"])
        same_truck = np.abs(first.astype(int) - second.astype(int)).mean()
        assert same_truck < np.abs(first.astype(int) - other.astype(int)).mean() / 3
        # With live=False every frame is the first, reproducible exposure.
        a = _snapshot(still.urls["snapshot"])
        time.sleep(0.06)
        assert np.array_equal(a, _snapshot(still.urls["snapshot"]))
    finally:
        cam.stop()
        still.stop()
