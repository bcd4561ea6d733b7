"""QR scanner: one code per line from a serial or TCP scanner (keyboard wedges type into the
console, which posts to /api/scan)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge_agent.config import ScannerSection
from edge_agent.devices.backoff import Backoff
from edge_agent.devices.streams import ByteStream, DeviceLost, SerialStream, TcpStream
from edge_agent.gate.events import DeviceStatus, Event, TicketScan

MAX_LINE = 4096


def clean_scan(raw: bytes) -> str | None:
    """One scanner line as text, or None for an empty / unreadable line."""
    try:
        from edge_agent.tickets import from_scanner_text

        text = from_scanner_text(raw)
    except ImportError:  # pragma: no cover - tickets package missing
        text = raw.decode("utf-8", "replace").strip()
    return text or None


class LineScanner:
    def __init__(self, cfg: ScannerSection, emit: Callable[[Event], None]) -> None:
        self.cfg = cfg
        self.emit = emit
        self.backoff = Backoff()
        self.online = False

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
                if self.online:
                    self.emit(DeviceStatus("scanner", False, {"error": str(exc)}))
                self.online = False
                await asyncio.sleep(self.backoff.next_delay())
                continue
            if not self.online:
                self.online = True
                self.emit(DeviceStatus("scanner", True, {}))
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
                self.online = False
                self.emit(DeviceStatus("scanner", False, {"error": str(exc)}))
            finally:
                pipe.close()
            await asyncio.sleep(self.backoff.next_delay())
