"""Byte pipes: a serial port (pyserial, read through the event loop) or a TCP socket."""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

import serial

EMPTY_READS_HUNG_UP = 3  # consecutive "readable but empty" wake-ups that mean a hang-up


class DeviceLost(Exception):
    """The pipe closed or failed; the adapter reconnects."""


class ByteStream(Protocol):
    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialStream:
    """pyserial in non-blocking mode, woken by the event loop's reader callback."""

    def __init__(self, device: str, baudrate: int) -> None:
        try:
            self.port = serial.Serial(device, baudrate=baudrate, timeout=0)
        except (serial.SerialException, OSError) as exc:
            raise DeviceLost(f"cannot open {device}: {exc}") from exc
        self.device = device
        self._loop = asyncio.get_running_loop()

    async def read(self) -> bytes:
        empty = 0
        while True:
            await self._readable()
            try:
                # os.read, not port.read: pyserial raises on the first empty read, and a Linux
                # pty now and then wakes a reader with nothing to read (pyserial sets VMIN=0).
                data = os.read(self.port.fileno(), 4096)
            except BlockingIOError:
                continue
            except (serial.SerialException, OSError) as exc:
                raise DeviceLost(f"{self.device}: {exc}") from exc
            if data:
                return data
            # Readable but empty, again and again: the other end hung up (USB unplugged).
            empty += 1
            if empty >= EMPTY_READS_HUNG_UP:
                raise DeviceLost(f"{self.device}: hung up (readable but no data)")
            await asyncio.sleep(0.01)

    async def _readable(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        fd = self.port.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            self._loop.remove_reader(fd)

    async def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceLost(f"{self.device}: {exc}") from exc

    def close(self) -> None:
        try:
            self.port.close()
        except (serial.SerialException, OSError):
            pass


class TcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self.reader, self.writer, self.name = reader, writer, name

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 3.0) -> TcpStream:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise DeviceLost(f"cannot connect to {host}:{port}: {exc}") from exc
        return cls(r, w, f"{host}:{port}")

    async def read(self) -> bytes:
        try:
            data = await self.reader.read(4096)
        except OSError as exc:
            raise DeviceLost(f"{self.name}: {exc}") from exc
        if not data:
            raise DeviceLost(f"{self.name}: connection closed")
        return data

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise DeviceLost(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        self.writer.close()
