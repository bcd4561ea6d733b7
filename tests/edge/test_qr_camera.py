"""A camera at the driver's window as the QR scanner: real HTTP snapshots, real zxing-cpp."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.config import ScannerSection
from edge_agent.devices.scanner import CameraQrScanner, tickets_in_jpeg
from edge_agent.gate.events import DeviceStatus, Event, TicketScan
from ledger.ticket_qr import render_qr

TICKET = "CT1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEPWK G2EP4J0B"


def phone_photo(text: str) -> bytes:
    """A 1280x720 JPEG of the QR on a grey scene, rotated and softened like a held-up phone."""
    png = render_qr(text, "png", scale=6, max_version=None)
    code = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert code is not None
    canvas = np.full((720, 1280), 110, np.uint8)
    h, w = code.shape
    canvas[150 : 150 + h, 400 : 400 + w] = code
    turn = cv2.getRotationMatrix2D((640, 360), 12, 1.0)
    tilted = cv2.warpAffine(canvas, turn, (1280, 720), borderValue=110)
    photo = cv2.GaussianBlur(tilted, (3, 3), 0)
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return jpeg.tobytes()


class Camera:
    """An IP camera's snapshot endpoint; what it shows can change, and it can be unplugged."""

    def __init__(self) -> None:
        self.jpeg = phone_photo("https://example.invalid/not-a-ticket")
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = camera.jpeg
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/snapshot.jpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def unplug(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def camera() -> Iterator[Camera]:
    cam = Camera()
    yield cam
    cam.unplug()


def test_only_ticket_codes_are_taken_from_a_frame() -> None:
    assert tickets_in_jpeg(phone_photo(TICKET)) == [TICKET]
    assert tickets_in_jpeg(phone_photo("https://example.invalid/menu")) == []
    assert tickets_in_jpeg(b"not a jpeg") == []


def test_missing_snapshot_url_is_a_clear_config_error() -> None:
    with pytest.raises(ValueError, match="snapshot_url"):
        ScannerSection(kind="camera")


def test_camera_scanner_reports_a_ticket_once_and_goes_offline(camera: Camera) -> None:
    events: list[Event] = []
    scanner = CameraQrScanner(
        ScannerSection(kind="camera", snapshot_url=camera.url, interval_ms=100), events.append
    )

    async def until(pred: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.05)

    async def scenario() -> None:
        task = asyncio.create_task(scanner.run())
        try:
            await until(lambda: any(isinstance(e, DeviceStatus) for e in events), 10)
            await asyncio.sleep(0.5)
            assert not [e for e in events if isinstance(e, TicketScan)]  # a QR, not a ticket
            camera.jpeg = phone_photo(TICKET)
            await until(lambda: any(isinstance(e, TicketScan) for e in events), 10)
            await asyncio.sleep(0.6)  # the phone is still held up: several more frames
            camera.unplug()
            await until(lambda: isinstance(events[-1], DeviceStatus)
                        and not events[-1].online, 15)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert [e for e in events if isinstance(e, TicketScan)] == [TicketScan(TICKET)]
    status = [e for e in events if isinstance(e, DeviceStatus)]
    assert status[0].online and not status[-1].online
    assert "snapshot" in status[-1].detail["error"]
