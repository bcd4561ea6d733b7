"""Serial indicator endpoints: a pty and a TCP port each, showing the simulated scale."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.physics import Reading, ScaleModel, ScaleSpec
from firmware_sim.protocols import sics, toledo, xk3190
from firmware_sim.transports import PtyPort, TcpFanout

__all__ = ["ContinuousIndicator", "SicsIndicator", "FRAME_ENCODERS", "SicsSession"]

FrameEncoder = Callable[[Reading, ScaleSpec], bytes]


def _xk_tf0(r: Reading, spec: ScaleSpec) -> bytes:
    return xk3190.encode_tf0(spec.to_display(r.shown_kg), spec.decimals)


def _xk_f2(r: Reading, spec: ScaleSpec) -> bytes:
    return xk3190.encode_format2(spec.to_display(r.shown_kg), spec.decimals)


def _toledo(r: Reading, spec: ScaleSpec) -> bytes:
    status = toledo.ToledoStatus(
        net=r.net_mode,
        negative=r.shown_kg < 0,
        out_of_range=r.overload or r.underload,
        motion=not r.stable,
        kg=spec.unit == "kg" or spec.unit == "t",
    )
    return toledo.encode(
        spec.to_display(r.shown_kg),
        spec.to_display(r.tare_kg),
        spec.decimals,
        spec.to_display(spec.e_kg),
        status,
    )


# name -> (protocol id in the endpoints JSON, device link name, encoder)
FRAME_ENCODERS: dict[str, tuple[str, str, FrameEncoder]] = {
    "xk3190": ("xk3190-tf0", "ttyXK3190", _xk_tf0),
    "xk3190_format2": ("xk3190-format2", "ttyXK3190F2", _xk_f2),
    "toledo": ("toledo-continuous", "ttyTOLEDO", _toledo),
}


class ContinuousIndicator:
    """An indicator in continuous-output mode: one frame per tick to the pty and TCP clients."""

    def __init__(self, name: str, dev_dir: Path) -> None:
        self.name = name
        self.protocol, link_name, self._encode = FRAME_ENCODERS[name]
        self.pty = PtyPort(dev_dir / link_name)
        self.tcp = TcpFanout()

    async def start(self) -> None:
        await self.tcp.start()

    def send(self, reading: Reading, spec: ScaleSpec) -> None:
        frame = self._encode(reading, spec)
        self.pty.write(frame)
        self.tcp.broadcast(frame)

    def endpoint(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "device": str(self.pty.link),
            "tcp": {"host": "127.0.0.1", "port": self.tcp.port},
            "baud": 9600,
        }
        if self.name == "toledo":
            out["checksum"] = True
        return out

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pty.close(loop)
        await self.tcp.close()


@dataclass
class SicsSession:
    """One connection's SICS state: partial input, a pending ``S``, ``SIR`` repetition."""

    reply: Callable[[bytes], None]
    buffer: bytes = b""
    pending_since: float | None = None
    repeating: bool = False
    lines: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        out: list[str] = []
        while True:
            cut = min(
                (i for i in (self.buffer.find(b"\r"), self.buffer.find(b"\n")) if i >= 0),
                default=-1,
            )
            if cut < 0:
                break
            line, self.buffer = self.buffer[:cut], self.buffer[cut + 1 :]
            if line.strip():
                out.append(line.decode("ascii", "replace"))
        if len(self.buffer) > 256:
            self.buffer = b""  # garbage without a terminator: resynchronise
        return out


class SicsIndicator:
    """An MT-SICS indicator: answers commands on the pty and on every TCP connection."""

    S_TIMEOUT_S = 3.0  # real seconds an ``S`` waits for stability before ``S I``

    def __init__(self, dev_dir: Path, scale: ScaleModel, clock: Callable[[], float]) -> None:
        self.scale = scale
        self._clock = clock
        self.pty = PtyPort(dev_dir / "ttySICS")
        self.tcp = TcpFanout(self._receive, on_close=self._closed)
        # Keyed by the connection's ``reply`` callable itself, not its id(): the dict keeps it
        # alive, so a new connection can never inherit a closed one's state through id reuse.
        self._sessions: dict[Callable[[bytes], None], SicsSession] = {}

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await self.tcp.start()
        self.pty.on_receive(loop, self._receive)

    def _session(self, reply: Callable[[bytes], None]) -> SicsSession:
        # The pty has one session; each TCP connection has its own ``reply`` closure.
        session = self._sessions.get(reply)
        if session is None:
            session = self._sessions[reply] = SicsSession(reply)
        return session

    def _closed(self, reply: Callable[[bytes], None]) -> None:
        """A TCP connection ended: forget its session (else ``SIR`` repeats for it forever)."""
        self._sessions.pop(reply, None)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def _receive(self, data: bytes, reply: Callable[[bytes], None]) -> None:
        session = self._session(reply)
        for line in session.feed(data):
            session.repeating = False
            session.pending_since = None
            self._answer(session, line)

    def _answer(self, session: SicsSession, line: str, *, timed_out: bool = False) -> None:
        answer = sics.respond(line, self.scale, timed_out=timed_out)
        if answer.wait_for_stable:
            if session.pending_since is None:
                session.pending_since = self._clock()
            return
        session.pending_since = None
        session.repeating = answer.repeat_immediate
        if answer.line is not None:
            session.reply(answer.line.encode("ascii") + b"\r\n")

    def tick(self) -> None:
        """Resolve pending ``S`` commands and repeat ``SIR`` answers."""
        now = self._clock()
        for session in list(self._sessions.values()):
            if session.pending_since is not None:
                timed_out = now - session.pending_since >= self.S_TIMEOUT_S
                self._answer(session, "S", timed_out=timed_out)
            elif session.repeating:
                self._answer(session, "SIR")

    def endpoint(self) -> dict[str, Any]:
        return {
            "protocol": "mt-sics",
            "device": str(self.pty.link),
            "tcp": {"host": "127.0.0.1", "port": self.tcp.port},
            "baud": 9600,
        }

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pty.close(loop)
        await self.tcp.close()
