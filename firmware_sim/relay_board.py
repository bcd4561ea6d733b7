"""A USB serial relay board (LCUS type, CH340 USB-serial chip) on a pty.

These cheap boards are everywhere at small weighbridges: the gate PC opens the CH340's serial
port (9600 8N1) and sends 4-byte commands ``A0 <channel> <state> <sum>`` — channel 1-based,
state 0 = open / 1 = closed, sum = (0xA0 + channel + state) & 0xFF. The board answers nothing,
so a master cannot tell whether a command arrived. Frames with a bad sum or an unknown channel
are dropped and counted, as the board's firmware ignores them.

The contacts are wired to the simulated gate (``WIRING``): closing ``barrier_up`` raises the
barrier as a pushbutton on the barrier controller would, and the lights and horn follow theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.transports import PtyPort
from firmware_sim.world import GateOutputs

__all__ = ["HEADER", "WIRING", "RelayDecoder", "RelayCommand", "UsbRelayBoard", "relay_frame"]

HEADER = 0xA0
FRAME_LEN = 4
WIRING = {"barrier_up": 1, "barrier_down": 2, "light_red": 3, "light_green": 4, "horn": 5}
"""Which relay channel drives which contact of the simulated gate."""


def relay_frame(channel: int, closed: bool) -> bytes:
    """The command that sets one relay (an independent encoder for tests and tools)."""
    head = bytes([HEADER, channel, 1 if closed else 0])
    return head + bytes([sum(head) & 0xFF])


@dataclass(frozen=True)
class RelayCommand:
    channel: int
    closed: bool


@dataclass
class RelayDecoder:
    """Pure byte-stream decoder: whole frames, split frames, garbage and bad sums."""

    channels: int = 8
    bad_sum: int = 0
    bad_channel: int = 0
    skipped_bytes: int = 0
    _buf: bytes = field(default=b"", repr=False)

    def feed(self, data: bytes) -> list[RelayCommand]:
        self._buf += data
        out: list[RelayCommand] = []
        while self._buf:
            start = self._buf.find(bytes([HEADER]))
            if start < 0:
                self.skipped_bytes += len(self._buf)
                self._buf = b""
                break
            self.skipped_bytes += start
            self._buf = self._buf[start:]
            if len(self._buf) < FRAME_LEN:
                break
            frame, rest = self._buf[:FRAME_LEN], self._buf[FRAME_LEN:]
            if sum(frame[:3]) & 0xFF != frame[3]:
                # Resynchronise on the next header byte rather than dropping all four bytes:
                # the header may have been noise and a real frame may start inside.
                self.bad_sum += 1
                self.skipped_bytes += 1
                self._buf = self._buf[1:]
                continue
            self._buf = rest
            channel, state = frame[1], frame[2]
            if not 1 <= channel <= self.channels or state > 1:
                self.bad_channel += 1
                continue
            out.append(RelayCommand(channel, state == 1))
        return out


class UsbRelayBoard:
    """The board on a pty (``ttyRELAY``); ``outputs()`` is what its contacts drive."""

    def __init__(self, dev_dir: Path, *, channels: int = 8) -> None:
        self.pty = PtyPort(dev_dir / "ttyRELAY")
        self.decoder = RelayDecoder(channels)
        self.closed = [False] * (channels + 1)  # index = channel; 0 unused
        self.commands: list[RelayCommand] = []  # every accepted command, for tests and logs
        self.on_command: Callable[[RelayCommand], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pty.on_receive(loop, self._receive)

    def _receive(self, data: bytes, _reply: Callable[[bytes], None]) -> None:
        for cmd in self.decoder.feed(data):
            self.closed[cmd.channel] = cmd.closed
            self.commands.append(cmd)
            if self.on_command is not None:
                self.on_command(cmd)

    def unplug(self, loop: asyncio.AbstractEventLoop) -> None:
        """Pull the USB cable: the device path goes away and an open port hangs up. A board
        without power opens every relay."""
        self.pty.close(loop)
        self.closed = [False] * len(self.closed)

    def plug(self, loop: asyncio.AbstractEventLoop) -> None:
        """Plug it back in: a new port behind the same device path."""
        self.pty = PtyPort(self.pty.link)
        self.decoder = RelayDecoder(len(self.closed) - 1)
        self.start(loop)

    def outputs(self) -> GateOutputs:
        return GateOutputs(**{name: self.closed[ch] for name, ch in WIRING.items()})

    def endpoint(self) -> dict[str, Any]:
        return {
            "protocol": "lcus-relay",
            "device": str(self.pty.link),
            "baud": 9600,
            "channels": len(self.closed) - 1,
            "wiring": dict(WIRING),
            "frame": "A0 <channel 1..N> <0 open|1 closed> <sum & 0xFF>",
        }

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pty.close(loop)
