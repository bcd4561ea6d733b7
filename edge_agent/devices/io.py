"""Gate IO: barrier, lights and horn out; IR beams, loops and barrier feedback in.

``ModbusIO`` polls discrete inputs and writes coils (Modbus TCP or RTU); ``UsbRelayIO`` drives
the common LCUS-type USB serial relay boards (outputs only: ``A0 <ch> <state> <sum>``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from edge_agent.config import IoSection
from edge_agent.devices.link import DeviceLink, Emit
from edge_agent.devices.streams import DeviceLost, SerialStream
from edge_agent.gate.events import Inputs, Signals


def inputs_from_bits(bits: list[bool], start: int, cfg: IoSection) -> Inputs:
    """Map a block of discrete inputs read at ``start`` to an :class:`Inputs`. Pure."""
    m = cfg.inputs

    def bit(addr: int | None, default: bool) -> bool:
        return default if addr is None else bool(bits[addr - start])

    return Inputs(
        ir_entry=bit(m.ir_entry, False),
        ir_exit=bit(m.ir_exit, False),
        loop_entry=bit(m.loop_entry, False),
        loop_exit=bit(m.loop_exit, False),
        barrier_up=bit(m.barrier_up_fb, False),
        barrier_down=bit(m.barrier_down_fb, True),
    )


class ModbusIO(DeviceLink):
    device = "io"

    def __init__(self, cfg: IoSection, emit: Emit) -> None:
        super().__init__(emit)
        self.cfg = cfg
        self.client: Any = None
        self.last: Inputs | None = None
        self.coil_writes: list[tuple[int, bool]] = []  # for diagnostics and benchmarks
        self._lock = asyncio.Lock()

    def _new_client(self) -> Any:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        if self.cfg.kind == "modbus_tcp":
            return AsyncModbusTcpClient(self.cfg.host or "", port=self.cfg.port or 502,
                                        timeout=1, retries=0)
        return AsyncModbusSerialClient(self.cfg.device or "", baudrate=self.cfg.baudrate,
                                       timeout=1, retries=0)

    async def run(self) -> None:
        from pymodbus.exceptions import ModbusException

        m = self.cfg.inputs
        addrs = [a for a in (m.ir_entry, m.ir_exit, m.loop_entry, m.loop_exit, m.barrier_up_fb,
                             m.barrier_down_fb) if a is not None]
        start, count = min(addrs), max(addrs) - min(addrs) + 1
        while True:
            client = self._new_client()
            try:
                if not await client.connect():
                    raise DeviceLost("cannot connect")
                self.client = client
                while True:
                    async with self._lock:
                        rr = await client.read_discrete_inputs(start, count=count,
                                                               device_id=self.cfg.unit_id)
                    if rr.isError():
                        raise DeviceLost(f"Modbus error reply {rr}")
                    self.backoff.reset()
                    self._status(True, {})
                    ins = inputs_from_bits(list(rr.bits), start, self.cfg)
                    if ins != self.last:
                        self.last = ins
                        self.emit(ins)
                    await asyncio.sleep(self.cfg.poll_ms / 1000)
            except (DeviceLost, ModbusException, OSError, TimeoutError) as exc:
                self._status(False, {"error": str(exc) or type(exc).__name__,
                                     "endpoint": self._where()})
            finally:
                self.client = None
                # Inputs seen before the loss say nothing about now: after a reconnect the
                # first good read is reported even when it looks the same.
                self.last = None
                client.close()
            await asyncio.sleep(self.backoff.next_delay())

    def _where(self) -> str:
        if self.cfg.kind == "modbus_tcp":
            return f"{self.cfg.host}:{self.cfg.port} unit {self.cfg.unit_id}"
        return f"{self.cfg.device} unit {self.cfg.unit_id}"

    async def _write(self, addr: int | None, value: bool) -> None:
        if addr is None:
            return
        client = self.client
        if client is None:
            # Fail closed: no coil is written while the board is unreachable, so the barrier
            # stays where its controller holds it (down) until the operator sees the alarm.
            raise DeviceLost(f"gate IO ({self._where()}) is offline; check its cable and power")
        async with self._lock:
            rr = await client.write_coil(addr, value, device_id=self.cfg.unit_id)
        if rr.isError():
            raise DeviceLost(f"coil {addr} write refused: {rr}")
        self.coil_writes.append((addr, value))

    async def barrier(self, up: bool) -> None:
        # The board's barrier coils are momentary: a 1 on barrier_up or barrier_down.
        await self._write(self.cfg.coils.barrier_up if up else self.cfg.coils.barrier_down, True)

    async def signals(self, sig: Signals) -> None:
        c = self.cfg.coils
        await self._write(c.light_red, sig.red)
        await self._write(c.light_green, sig.green)
        await self._write(c.horn, sig.horn)


def relay_frame(channel: int, on: bool) -> bytes:
    """LCUS relay board command: A0, channel, state, checksum (sum of the first three)."""
    head = bytes([0xA0, channel, 1 if on else 0])
    return head + bytes([sum(head) & 0xFF])


class UsbRelayIO(DeviceLink):
    device = "io"

    """Outputs only; the barrier is pulsed for ``pulse_ms``. No beam or loop inputs.

    The boards never answer, so the only sign of life is the serial port itself: ``run`` keeps
    it open and a hang-up (USB unplugged, pty closed) or a failed write marks the board offline.
    """

    def __init__(self, cfg: IoSection, emit: Emit) -> None:
        super().__init__(emit)
        self.cfg = cfg
        self.port: SerialStream | None = None
        self.frames_sent: list[bytes] = []  # for diagnostics and benchmarks

    async def run(self) -> None:
        device = self.cfg.device or ""
        while True:
            try:
                port = SerialStream(device, self.cfg.baudrate)
            except DeviceLost as exc:
                self._status(False, {"error": str(exc), "endpoint": device})
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self.port = port
            self.backoff.reset()
            self._status(True, {})
            try:
                while True:
                    await port.read()  # nothing is expected; this wakes on a hang-up
            except DeviceLost as exc:
                self._status(False, {"error": str(exc), "endpoint": device})
            finally:
                self.port = None
                port.close()
            await asyncio.sleep(self.backoff.next_delay())

    async def _set(self, channel: int | None, on: bool) -> None:
        if channel is None:
            return
        port = self.port
        if port is None:
            raise DeviceLost(f"USB relay board {self.cfg.device} is offline; check the USB cable")
        frame = relay_frame(channel, on)
        try:
            await port.write(frame)
        except DeviceLost as exc:
            self._status(False, {"error": str(exc), "endpoint": self.cfg.device})
            raise
        self.frames_sent.append(frame)

    async def barrier(self, up: bool) -> None:
        ch = self.cfg.coils.barrier_up if up else self.cfg.coils.barrier_down
        await self._set(ch, True)
        await asyncio.sleep(self.cfg.pulse_ms / 1000)
        await self._set(ch, False)

    async def signals(self, sig: Signals) -> None:
        c = self.cfg.coils
        await self._set(c.light_red, sig.red)
        await self._set(c.light_green, sig.green)
        await self._set(c.horn, sig.horn)


class NoIO:
    """No gate IO configured: the barrier cannot be raised (fails closed)."""

    def __init__(self) -> None:
        self.online = False

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def barrier(self, up: bool) -> None:
        if up:
            raise DeviceLost("no gate IO is configured ([io] kind = \"none\")")

    async def signals(self, sig: Signals) -> None:
        return None


GateIO = ModbusIO | UsbRelayIO | NoIO


def make_io(cfg: IoSection, emit: Emit) -> GateIO:
    if cfg.kind in ("modbus_tcp", "modbus_rtu"):
        return ModbusIO(cfg, emit)
    if cfg.kind == "usb_relay":
        return UsbRelayIO(cfg, emit)
    return NoIO()
