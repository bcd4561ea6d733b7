"""QR scanner: one code per line from a serial or TCP scanner (keyboard wedges type into the
console, which posts to /api/scan), or ticket QR codes found in a camera's snapshots."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np

from edge_agent.config import ScannerSection
from edge_agent.devices.link import DeviceLink, Emit
from edge_agent.devices.streams import ByteStream, DeviceLost, SerialStream, TcpStream
from edge_agent.gate.events import TicketScan

MAX_LINE = 4096


def clean_scan(raw: bytes) -> str | None:
    """One scanner line as text, or None for an empty / unreadable line."""
    try:
        from edge_agent.tickets import from_scanner_text

        text = from_scanner_text(raw)
    except ImportError:  # pragma: no cover - tickets package missing
        text = raw.decode("utf-8", "replace").strip()
    return text or None


class LineScanner(DeviceLink):
    device = "scanner"

    def __init__(self, cfg: ScannerSection, emit: Emit) -> None:
        super().__init__(emit)
        self.cfg = cfg

    async def _open(self) -> ByteStream:
        if self.cfg.kind == "serial":
            assert self.cfg.device
            return SerialStream(self.cfg.device, self.cfg.baudrate)
        assert self.cfg.host and self.cfg.port
        return await TcpStream.connect(self.cfg.host, self.cfg.port)

    async def run(self) -> None:
        while True:
            buf = b""
            try:
                pipe = await self._open()
            except DeviceLost as exc:
                self._status(False, {"error": str(exc)})
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self._status(True, {})
            self.backoff.reset()
            try:
                while True:
                    buf += await pipe.read()
                    *lines, buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
                    for line in lines:
                        text = clean_scan(line)
                        if text:
                            self.emit(TicketScan(text))
                    if len(buf) > MAX_LINE:
                        buf = b""
            except DeviceLost as exc:
                self._status(False, {"error": str(exc)})
            finally:
                pipe.close()
            await asyncio.sleep(self.backoff.next_delay())


# A driver holds the phone up for a few seconds: one code is one scan, not one per frame.
REPEAT_AFTER_S = 30.0


def tickets_in_jpeg(jpeg: bytes) -> list[str]:
    """The e-ticket texts zxing-cpp finds in one JPEG snapshot (none for an unreadable image)."""
    from edge_agent.tickets.scan import ticket_texts_in_frame

    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return [] if frame is None else ticket_texts_in_frame(frame)


class CameraQrScanner(DeviceLink):
    """Polls a camera's snapshot URL and reports each ticket QR it sees as a scan."""

    device = "scanner"

    def __init__(self, cfg: ScannerSection, emit: Emit) -> None:
        super().__init__(emit)
        assert cfg.snapshot_url
        self.url = cfg.snapshot_url
        self.interval_s = cfg.interval_ms / 1000
        self._seen: dict[str, float] = {}

    def _fresh(self, text: str, now: float) -> bool:
        self._seen = {t: at for t, at in self._seen.items() if now - at < REPEAT_AFTER_S}
        if text in self._seen:
            return False
        self._seen[text] = now
        return True

    async def run(self) -> None:
        from edge_agent.camera import CameraError, grab_frames

        while True:
            try:
                frames = await grab_frames(self.url, 1, 0.0)
            except CameraError as exc:
                self._status(False, {"error": str(exc)})
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self._status(True, {"camera": self.url})
            self.backoff.reset()
            # zxing-cpp takes a few ms per 720p frame: keep it off the gate's event loop.
            texts = await asyncio.to_thread(tickets_in_jpeg, frames[0].jpeg)
            now = time.monotonic()
            for text in texts:
                if self._fresh(text, now):
                    self.emit(TicketScan(text))
            await asyncio.sleep(self.interval_s)
