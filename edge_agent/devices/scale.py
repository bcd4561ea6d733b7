"""Scale readers: a serial/TCP indicator through a protocol decoder, or a Modbus transmitter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge_agent.config import ScaleSection
from edge_agent.devices.link import DeviceLink, Emit
from edge_agent.devices.streams import ByteStream, DeviceLost, SerialStream, TcpStream
from edge_agent.gate.events import WeightSample
from edge_agent.scale import ScaleStream, make_decoder

SICS_START = b"SIR\r\n"  # repeat immediate weight at the indicator's rate
SICS_QUIET_S = 1.0  # no reply this long: ask again


class StreamScale(DeviceLink):
    device = "scale"

    """Indicator on a byte pipe. Counters are in ``self.stream.stats``."""

    def __init__(self, cfg: ScaleSection, emit: Emit) -> None:
        super().__init__(emit)
        self.cfg = cfg
        options: dict[str, Any] = {"checksum": cfg.toledo_checksum}
        if cfg.protocol == "regex":
            options.update(pattern=cfg.regex_pattern, terminator=cfg.regex_terminator)
        self.stream = ScaleStream(make_decoder(cfg.protocol, **options))

    async def _open(self) -> ByteStream:
        if self.cfg.transport == "serial":
            assert self.cfg.device
            return SerialStream(self.cfg.device, self.cfg.baudrate)
        assert self.cfg.host and self.cfg.port
        return await TcpStream.connect(self.cfg.host, self.cfg.port)

    async def run(self) -> None:
        while True:
            try:
                pipe = await self._open()
            except DeviceLost as exc:
                self._status(False, {"error": str(exc)})
                await asyncio.sleep(self.backoff.next_delay())
                continue
            try:
                await self._pump(pipe)
            except DeviceLost as exc:
                self._status(False, {"error": str(exc)})
            finally:
                pipe.close()
            await asyncio.sleep(self.backoff.next_delay())

    async def _pump(self, pipe: ByteStream) -> None:
        sics = self.cfg.protocol == "sics"
        if sics:
            await pipe.write(SICS_START)
        while True:
            try:
                data = await asyncio.wait_for(pipe.read(), SICS_QUIET_S if sics else None)
            except TimeoutError:
                await pipe.write(SICS_START)
                continue
            for r in self.stream.feed(data):
                self.backoff.reset()
                self._status(True, {})
                self.emit(WeightSample(r.kg(self.cfg.unit), motion=r.stable is False))


class ModbusScale(DeviceLink):
    device = "scale"

    """Weighing transmitter polled over Modbus TCP or RTU (pymodbus async client)."""

    def __init__(self, cfg: ScaleSection, emit: Emit) -> None:
        super().__init__(emit)
        self.cfg = cfg
        self.polls = 0

    def _client(self) -> Any:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        if self.cfg.transport == "modbus_tcp":
            return AsyncModbusTcpClient(self.cfg.host or "", port=self.cfg.port or 502,
                                        timeout=1, retries=0)
        return AsyncModbusSerialClient(self.cfg.device or "", baudrate=self.cfg.baudrate,
                                       timeout=1, retries=0)

    async def run(self) -> None:
        from pymodbus.exceptions import ModbusException

        m = self.cfg.modbus
        while True:
            client = self._client()
            try:
                if not await client.connect():
                    raise DeviceLost("cannot connect")
                while True:
                    t0 = time.monotonic()
                    kg, stable = await self._read_once(client)
                    self.backoff.reset()
                    self._status(True, {})
                    self.emit(WeightSample(kg, motion=stable is False))
                    self.polls += 1
                    await asyncio.sleep(max(0.0, self.cfg.poll_ms / 1000 - (time.monotonic() - t0)))
            except (DeviceLost, ModbusException, OSError, TimeoutError) as exc:
                self._status(False, {"error": str(exc) or type(exc).__name__,
                                     "unit_id": m.unit_id})
            finally:
                client.close()
            await asyncio.sleep(self.backoff.next_delay())

    async def _read_once(self, client: Any) -> tuple[int, bool | None]:
        m = self.cfg.modbus
        addrs = [m.weight_address, m.weight_address + m.weight_words - 1]
        if m.status_address is not None:
            addrs.append(m.status_address)
        if m.decimals_address is not None:
            addrs.append(m.decimals_address)
        start, end = min(addrs), max(addrs)
        fn = client.read_holding_registers if m.table == "holding" else client.read_input_registers
        rr = await fn(start, count=end - start + 1, device_id=m.unit_id)
        if rr.isError():
            raise DeviceLost(f"Modbus error reply {rr}")
        regs = list(rr.registers)
        return decode_registers(regs, start, self.cfg)


def decode_registers(regs: list[int], start: int, cfg: ScaleSection) -> tuple[int, bool | None]:
    """Weight in kg and the stable bit from a block of registers read at ``start``. Pure."""
    m = cfg.modbus
    w = regs[m.weight_address - start : m.weight_address - start + m.weight_words]
    if m.weight_words == 2:
        hi, lo = (w[0], w[1]) if m.word_order == "big" else (w[1], w[0])
        raw = (hi << 16) | lo
        if m.signed and raw & 0x8000_0000:
            raw -= 1 << 32
    else:
        raw = w[0]
        if m.signed and raw & 0x8000:
            raw -= 1 << 16
    decimals = m.decimals
    if m.decimals_address is not None:
        decimals = regs[m.decimals_address - start]
        if not 0 <= decimals <= 4:
            raise DeviceLost(f"decimals register holds {decimals}, expected 0..4")
    stable: bool | None = None
    if m.status_address is not None and m.stable_bit is not None:
        stable = bool(regs[m.status_address - start] >> m.stable_bit & 1)
    factor = 1000 if cfg.unit == "t" else 1
    kg = raw * factor // (10**decimals) if decimals else raw * factor
    return kg, stable


def make_scale(cfg: ScaleSection, emit: Emit) -> StreamScale | ModbusScale:
    return ModbusScale(cfg, emit) if cfg.protocol == "modbus" else StreamScale(cfg, emit)
