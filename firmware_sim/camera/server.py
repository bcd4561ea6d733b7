"""A simulated IP camera: JPEG snapshots and MJPEG over HTTP, optionally ANPR push.

``/snapshot.jpg`` returns the current frame, ``/mjpeg`` streams it as
``multipart/x-mixed-replace`` (what browsers and OpenCV read from IP cameras), and
``/label.json`` gives the ground truth of the current frame for tests. Like a real sensor,
each frame served is a fresh exposure of the scene (new sensor noise, a sub-pixel shake), at
most one per frame period, so a gate voting over several frames sees what a camera gives it
and no more; the first exposure of each scene is reproducible from the seed. In ANPR mode the
camera POSTs each plate it shows to a URL as JSON in the shape of the Vzenith (臻识) HTTP
push that many Chinese gate cameras use (``AlarmInfoPlate``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from firmware_sim.camera.render import Conditions, FrameLabel, Scene, render_scene

__all__ = ["CameraServer", "anpr_payload"]

log = logging.getLogger(__name__)
_BOUNDARY = "coalgateframe"
# Vzenith colour codes: 0 unknown, 1 blue, 2 yellow, 3 white, 4 black, 5 green.
_COLOR_CODES = {"blue": 1, "yellow": 2, "yellow_double": 2, "green": 5}


def anpr_payload(label: FrameLabel, serialno: str, ts: float) -> dict[str, Any]:
    """The JSON a gate ANPR camera pushes for ``label`` (Vzenith AlarmInfoPlate shape)."""
    x, y, w, h = label.bbox or (0, 0, 0, 0)
    return {"AlarmInfoPlate": {
        "channel": 0, "deviceName": "coalgate-sim", "serialno": serialno,
        "result": {"PlateResult": {
            "license": label.plate, "colorType": _COLOR_CODES.get(label.kind or "", 0),
            "confidence": 99, "type": 2 if label.kind == "yellow_double" else 1,
            "location": {"RECT": {"left": x, "top": y, "right": x + w, "bottom": y + h}},
            "timeStamp": {"Timeval": {"sec": int(ts), "usec": int((ts % 1) * 1e6)}},
        }},
    }}


class CameraServer:
    """Serves rendered frames on ``host:port`` (port 0 picks a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0,
                 fps: float = 5.0, quality: int = 85, live: bool = True) -> None:
        self._host, self._port = host, port
        self._seed = seed
        self._fps = fps
        self._quality = quality
        self._lock = threading.Condition()
        self._shows = 0
        self._jpeg = b""
        self._live = live  # False: every frame of a scene is the same first exposure
        self._scene: Scene | None = None
        self._exposures = 0
        self._exposed_at = 0.0
        self._label: FrameLabel | None = None
        self._push_url: str | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pushers: list[threading.Thread] = []
        self.push_errors: list[str] = []
        # Called (from the HTTP thread) for every request: the simulator starts its scenario
        # once the gate fetches its first frame.
        self.on_request: Callable[[], None] | None = None
        self.show(None)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> CameraServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("camera http: " + format, *args)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server._handle(self)

        self._httpd = ThreadingHTTPServer((self._host, self._port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="camera-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for t in self._pushers:
            t.join(timeout=5)
        self._pushers.clear()

    def __enter__(self) -> CameraServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def urls(self) -> dict[str, str]:
        if self._httpd is None:
            raise RuntimeError("camera server is not started; call start() first")
        host, port = self._httpd.server_address[:2]
        base = f"http://{host!s}:{port}"
        return {"snapshot": f"{base}/snapshot.jpg", "mjpeg": f"{base}/mjpeg",
                "label": f"{base}/label.json"}

    # -- what the camera sees -------------------------------------------------------------
    def show(self, plate: str | None, *, plate_kind: str = "auto",
             conditions: Conditions | None = None) -> FrameLabel:
        """Point the camera at a truck carrying ``plate`` (None: the empty lane)."""
        scene = render_scene(plate, kind=plate_kind, conditions=conditions,
                             seed=self._seed * 100_003 + self._shows)
        frame, label = scene.expose()
        data = self._encode(frame)
        with self._lock:
            self._shows += 1
            self._scene = scene
            self._exposed_at = time.monotonic()
            self._jpeg = data
            self._label = label
            self._lock.notify_all()
            url = self._push_url
        if url is not None and plate is not None:
            t = threading.Thread(target=self._push, args=(url, label), daemon=True)
            self._pushers = [p for p in self._pushers if p.is_alive()] + [t]
            t.start()
        return label

    def _encode(self, frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def _current_jpeg(self) -> bytes:
        """The frame to serve now: a fresh exposure once per frame period when live."""
        with self._lock:
            if (not self._live or self._scene is None
                    or time.monotonic() - self._exposed_at < 1.0 / self._fps):
                return self._jpeg
            # Exposing under the lock keeps one exposure per period however many viewers.
            self._exposures += 1
            frame, _ = self._scene.expose(camera_seed=self._seed * 1_000_003 + self._exposures)
            self._jpeg = self._encode(frame)
            self._exposed_at = time.monotonic()
            return self._jpeg

    def frame(self) -> np.ndarray:
        """The current frame, decoded (BGR)."""
        data = self._current_jpeg()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError("current frame does not decode")
        return np.asarray(img)

    def enable_anpr_push(self, url: str) -> None:
        """POST each plate shown from now on to ``url`` as ANPR JSON."""
        with self._lock:
            self._push_url = url

    def _push(self, url: str, label: FrameLabel) -> None:
        body = json.dumps(anpr_payload(label, f"sim-{self._seed}", time.time()),
                          ensure_ascii=False).encode()
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except OSError as exc:  # the receiver being down must not stop the camera
            msg = f"ANPR push of {label.plate} to {url} failed: {exc}"
            log.warning(msg)
            self.push_errors.append(msg)

    # -- HTTP ----------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if self.on_request is not None:
            self.on_request()
        path = req.path.split("?")[0]
        if path == "/snapshot.jpg":
            self._send(req, 200, "image/jpeg", self._current_jpeg())
        elif path == "/label.json":
            with self._lock:
                label = self._label
            body = json.dumps(asdict(label) if label else None, ensure_ascii=False).encode()
            self._send(req, 200, "application/json; charset=utf-8", body)
        elif path == "/mjpeg":
            self._stream(req)
        else:
            self._send(req, 404, "text/plain; charset=utf-8",
                       b"not found; try /snapshot.jpg, /mjpeg or /label.json\n")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(body)

    def _stream(self, req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        period = 1.0 / self._fps
        try:
            while not self._stopping.is_set():
                data = self._current_jpeg()
                req.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(data)}\r\n\r\n".encode())
                req.wfile.write(data + b"\r\n")
                req.wfile.flush()
                with self._lock:  # wake early on a new frame or on stop
                    self._lock.wait(timeout=period)
        except (BrokenPipeError, ConnectionResetError):
            return  # the viewer went away
