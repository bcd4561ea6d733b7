"""Modbus slaves on pymodbus: the weighing transmitter (TCP + RTU over a pty) and gate IO (TCP).

The register contents come from the pure maps in ``protocols.modbus_maps``; ``refresh`` copies
the latest reading in and picks up what a master wrote (commands, coils).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from firmware_sim.transports import NullModem
from firmware_sim.world import GateOutputs, Site

__all__ = ["ScaleTransmitter", "GateIo"]

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


class ScaleTransmitter:
    """The weighing transmitter, unit ``unit_id``, on Modbus TCP and on RTU over a pty."""

    def __init__(self, scale: ScaleModel, dev_dir: Path, *, unit_id: int = 1) -> None:
        self.scale = scale
        self.unit_id = unit_id
        self.modem = NullModem(dev_dir / ".ttyMODBUS-server", dev_dir / "ttyMODBUS")
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self._counter = 0
        self.tcp_port = 0

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        tcp = ModbusTcpServer(_device(self.unit_id), address=("127.0.0.1", 0))
        await tcp.serve_forever(background=True)
        self.tcp_port = _port(tcp)
        self._servers.append(tcp)
        self.modem.start(loop)
        rtu = ModbusSerialServer(
            _device(self.unit_id),
            framer=FramerType.RTU,
            port=self.modem.inner.device,
            baudrate=9600,
        )
        await rtu.serve_forever(background=True)
        self._servers.append(rtu)
        await self.refresh()

    async def refresh(self) -> None:
        """Publish the latest reading; run a command a master wrote to the command register."""
        self._counter = (self._counter + 1) & 0xFFFF
        for server in self._servers:
            ctx = server.context
            command = await ctx.async_getValues(self.unit_id, _FC_READ_HOLDING, COMMAND_REGISTER, 1)
            if isinstance(command, list) and command[0]:
                self._run(int(command[0]))
                await ctx.async_setValues(self.unit_id, _FC_WRITE_HOLDING, COMMAND_REGISTER, [0])
        regs = transmitter_registers(self.scale.last, self.scale.spec, self._counter)
        for server in self._servers:
            await server.context.async_setValues(self.unit_id, _FC_WRITE_HOLDING, 0, regs)
            await server.context.async_setValues(self.unit_id, _FC_INPUT_REGISTERS, 0, regs)

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
            "scale_tcp": {
                "host": "127.0.0.1",
                "port": self.tcp_port,
                "unit_id": self.unit_id,
                "map": "weighing_transmitter",
            },
            "scale_rtu": {
                "device": str(self.modem.outer.link),
                "unit_id": self.unit_id,
                "baud": 9600,
                "map": "weighing_transmitter",
            },
        }

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.shutdown()
        self.modem.close(loop)


class GateIo:
    """The gate IO board: coils drive the site, discrete inputs show what the sensors see."""

    def __init__(self, site: Site, *, unit_id: int = 1) -> None:
        self.site = site
        self.unit_id = unit_id
        self._server: ModbusTcpServer | None = None
        self.tcp_port = 0

    async def start(self) -> None:
        self._server = ModbusTcpServer(_device(self.unit_id), address=("127.0.0.1", 0))
        await self._server.serve_forever(background=True)
        self.tcp_port = _port(self._server)
        await self.refresh()

    async def refresh(self) -> None:
        """Read the coils into the site (momentary barrier coils are reset), publish inputs."""
        assert self._server is not None
        ctx = self._server.context
        coils = await ctx.async_getValues(self.unit_id, 1, 0, len(COILS))
        if isinstance(coils, list):
            state = {name: bool(coils[address]) for name, address in COILS.items()}
            self.site.set_outputs(GateOutputs(**state))
            momentary = [COILS["barrier_up"], COILS["barrier_down"]]
            if any(state[name] for name in ("barrier_up", "barrier_down")):
                for address in momentary:
                    await ctx.async_setValues(self.unit_id, _FC_COILS, address, [False])
        bits = self.site.inputs().bits()
        await ctx.async_setValues(self.unit_id, _FC_DISCRETE, 0, bits)
        assert len(bits) == len(DISCRETE_INPUTS)

    def endpoint(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.tcp_port,
            "unit_id": self.unit_id,
            "map": "gate_io",
        }

    async def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
