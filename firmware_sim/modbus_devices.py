"""Modbus slaves on pymodbus: the weighing transmitter and the gate IO board, each on Modbus TCP
and on Modbus RTU over a pty (a null-modem pair: the server opens one end, clients the other).

The register contents come from the pure maps in ``protocols.modbus_maps``; ``refresh`` copies
the latest reading in and picks up what a master wrote (commands, coils). Both transports of a
device share one data store, so a coil written over RTU is seen over TCP and the other way round.

``set_answering(False)`` takes a device off the air the way the field does it: the TCP server
goes away (connections drop, new ones are refused) and the RTU line goes quiet (requests time
out). ``set_answering(True)`` brings it back on the same port and device path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.physics import CommandResult, ScaleModel
from firmware_sim.protocols.modbus_maps import (
    COILS,
    COMMAND_REGISTER,
    COMMANDS,
    DISCRETE_INPUTS,
    REGISTER_BLOCK_SIZE,
    transmitter_registers,
)
from firmware_sim.transports import Contact, NullModem
from firmware_sim.world import GateOutputs, Site

__all__ = ["ScaleTransmitter", "GateIo", "ModbusSlave"]

# pymodbus logs every refused request at ERROR with a traceback; a simulator keeps quiet.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_FC_READ_HOLDING = 3
_FC_WRITE_HOLDING = 16
_FC_INPUT_REGISTERS = 4
_FC_COILS = 15
_FC_DISCRETE = 2
_BITS = 16


def _device(unit_id: int) -> SimDevice:
    return SimDevice(
        unit_id,
        simdata=(
            [SimData(0, count=_BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=_BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=REGISTER_BLOCK_SIZE, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=REGISTER_BLOCK_SIZE, values=0, datatype=DataType.REGISTERS)],
        ),
    )


def _port(server: ModbusTcpServer) -> int:
    transport: Any = server.transport
    return int(transport.sockets[0].getsockname()[1])


class ModbusSlave:
    """One Modbus device (unit ``unit_id``) on TCP and on RTU over a null-modem pty pair.

    Clients open ``dev_dir/<link_name>``; the RTU server holds the hidden other end.
    """

    def __init__(self, dev_dir: Path, link_name: str, *, unit_id: int = 1) -> None:
        self.unit_id = unit_id
        self.modem = NullModem(dev_dir / f".{link_name}-server", dev_dir / link_name)
        self._tcp: ModbusTcpServer | None = None
        self._rtu: ModbusSerialServer | None = None
        self.context: Any = None
        self.tcp_port = 0
        self.answering = True
        # Called when a master connects over TCP / first sends a request over RTU.
        self.on_tcp_contact: Contact | None = None

    @property
    def on_rtu_contact(self) -> Contact | None:
        return self.modem.outer.on_contact

    @on_rtu_contact.setter
    def on_rtu_contact(self, callback: Contact | None) -> None:
        self.modem.outer.on_contact = callback

    def _traced_connect(self, connected: bool) -> None:
        if connected and self.on_tcp_contact is not None:
            self.on_tcp_contact()

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await self._start_tcp(0)
        self.modem.start(loop)
        self._rtu = ModbusSerialServer(
            _device(self.unit_id),
            framer=FramerType.RTU,
            port=self.modem.inner.device,
            baudrate=9600,
        )
        # One data store behind both transports (the server looks it up per request).
        self._rtu.context = self.context
        await self._rtu.serve_forever(background=True)

    async def _start_tcp(self, port: int) -> None:
        tcp = ModbusTcpServer(_device(self.unit_id), address=("127.0.0.1", port),
                              trace_connect=self._traced_connect)
        if self.context is None:
            self.context = tcp.context
        else:
            tcp.context = self.context  # a restart keeps the registers and coils
        await tcp.serve_forever(background=True)
        self._tcp = tcp
        self.tcp_port = _port(tcp)

    async def set_answering(self, answering: bool) -> None:
        """Take the device off the air (or back): TCP server down/up, RTU line cut/mended."""
        if answering == self.answering:
            return
        self.answering = answering
        self.modem.cut = not answering
        if answering:
            await self._start_tcp(self.tcp_port)
        elif self._tcp is not None:
            with contextlib.suppress(Exception):
                await self._tcp.shutdown()
            self._tcp = None

    def tcp_endpoint(self, map_name: str) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.tcp_port, "unit_id": self.unit_id,
                "map": map_name}

    def rtu_endpoint(self, map_name: str) -> dict[str, Any]:
        return {"device": str(self.modem.outer.link), "unit_id": self.unit_id, "baud": 9600,
                "map": map_name}

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for server in (self._tcp, self._rtu):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.shutdown()
        self._tcp = self._rtu = None
        self.modem.close(loop)


class ScaleTransmitter(ModbusSlave):
    """The weighing transmitter, unit ``unit_id``, on Modbus TCP and on RTU over a pty."""

    def __init__(self, scale: ScaleModel, dev_dir: Path, *, unit_id: int = 1) -> None:
        super().__init__(dev_dir, "ttyMODBUS", unit_id=unit_id)
        self.scale = scale
        self._counter = 0

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await super().start(loop)
        await self.refresh()

    async def refresh(self) -> None:
        """Publish the latest reading; run a command a master wrote to the command register."""
        self._counter = (self._counter + 1) & 0xFFFF
        ctx = self.context
        command = await ctx.async_getValues(self.unit_id, _FC_READ_HOLDING, COMMAND_REGISTER, 1)
        if isinstance(command, list) and command[0]:
            self._run(int(command[0]))
            await ctx.async_setValues(self.unit_id, _FC_WRITE_HOLDING, COMMAND_REGISTER, [0])
        regs = transmitter_registers(self.scale.last, self.scale.spec, self._counter)
        await ctx.async_setValues(self.unit_id, _FC_WRITE_HOLDING, 0, regs)
        await ctx.async_setValues(self.unit_id, _FC_INPUT_REGISTERS, 0, regs)

    def _run(self, code: int) -> CommandResult | None:
        name = COMMANDS.get(code)
        if name == "zero":
            return self.scale.zero()
        if name == "tare":
            return self.scale.tare()[0]
        if name == "clear_tare":
            self.scale.clear_tare()
        return None

    def endpoints(self) -> dict[str, Any]:
        return {
            "scale_tcp": self.tcp_endpoint("weighing_transmitter"),
            "scale_rtu": self.rtu_endpoint("weighing_transmitter"),
        }


OutputSource = Callable[[], GateOutputs]


def _either(a: GateOutputs, b: GateOutputs) -> GateOutputs:
    """Two drivers wired in parallel onto the same contacts (Modbus board and USB relay)."""
    return GateOutputs(
        barrier_up=a.barrier_up or b.barrier_up,
        barrier_down=a.barrier_down or b.barrier_down,
        light_red=a.light_red or b.light_red,
        light_green=a.light_green or b.light_green,
        horn=a.horn or b.horn,
    )


class GateIo(ModbusSlave):
    """The gate IO board: coils drive the site, discrete inputs show what the sensors see.

    On Modbus TCP and on Modbus RTU (``ttyGATEIO``). ``extra_outputs`` are other contacts wired
    to the same barrier and lights (the USB relay board); the site sees either driving them.
    """

    def __init__(self, site: Site, dev_dir: Path, *, unit_id: int = 1,
                 extra_outputs: OutputSource | None = None) -> None:
        super().__init__(dev_dir, "ttyGATEIO", unit_id=unit_id)
        self.site = site
        self.extra_outputs = extra_outputs

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await super().start(loop)
        await self.refresh()

    async def refresh(self) -> None:
        """Read the coils into the site (momentary barrier coils are reset), publish inputs."""
        ctx = self.context
        coils = await ctx.async_getValues(self.unit_id, 1, 0, len(COILS))
        if isinstance(coils, list):
            state = {name: bool(coils[address]) for name, address in COILS.items()}
            outputs = GateOutputs(**state)
            if self.extra_outputs is not None:
                outputs = _either(outputs, self.extra_outputs())
            self.site.set_outputs(outputs)
            momentary = [COILS["barrier_up"], COILS["barrier_down"]]
            if any(state[name] for name in ("barrier_up", "barrier_down")):
                for address in momentary:
                    await ctx.async_setValues(self.unit_id, _FC_COILS, address, [False])
        bits = self.site.inputs().bits()
        await ctx.async_setValues(self.unit_id, _FC_DISCRETE, 0, bits)
        assert len(bits) == len(DISCRETE_INPUTS)

    def endpoint(self) -> dict[str, Any]:
        return self.tcp_endpoint("gate_io")

    def endpoints(self) -> dict[str, Any]:
        return {"gate_io_tcp": self.tcp_endpoint("gate_io"),
                "gate_io_rtu": self.rtu_endpoint("gate_io")}
