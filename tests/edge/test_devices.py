"""Device adapters over real ptys: readings flow, a lost device is reported and reconnected."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path
from typing import Any

from edge_agent.config import IoSection, ScaleSection
from edge_agent.devices.backoff import Backoff
from edge_agent.devices.io import inputs_from_bits, relay_frame
from edge_agent.devices.scale import StreamScale, decode_registers
from edge_agent.gate.events import DeviceStatus, Event, Inputs, WeightSample
from tests.edge.encoders import sics_line, xk_frame


def open_pty(link: Path) -> int:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    name = os.ttyname(slave)
    os.close(slave)  # the reader opens it by path, like a real device
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(name)
    tmp.replace(link)
    return master


async def wait_until(pred: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


def test_pty_scale_reports_loss_and_reconnects(tmp_path: Path) -> None:
    link = tmp_path / "ttyScale"

    async def main() -> list[Event]:
        events: list[Event] = []
        master = open_pty(link)
        cfg = ScaleSection(protocol="xk3190", transport="serial", device=str(link))
        scale = StreamScale(cfg, events.append)
        task = asyncio.create_task(scale.run())

        async def pump(fd: int, kg: int, until: int) -> None:
            while sum(isinstance(e, WeightSample) and e.kg == kg for e in events) < until:
                os.write(fd, b"\x07noise" + xk_frame(kg))
                await asyncio.sleep(0.05)

        await asyncio.wait_for(pump(master, 15200, 3), 5)
        os.close(master)  # the cable is pulled
        await wait_until(lambda: any(isinstance(e, DeviceStatus) and not e.online
                                     for e in events))
        master = open_pty(link)  # plugged back in (a new pty behind the same path)
        await asyncio.wait_for(pump(master, 48800, 3), 10)
        task.cancel()
        os.close(master)
        return events

    events = asyncio.run(main())
    status = [e.online for e in events if isinstance(e, DeviceStatus)]
    assert status[:3] == [True, False, True]
    weights = [e.kg for e in events if isinstance(e, WeightSample)]
    assert set(weights) == {15200, 48800}


def test_pty_sics_is_polled(tmp_path: Path) -> None:
    link = tmp_path / "ttySics"

    async def main() -> tuple[list[Event], bytes]:
        events: list[Event] = []
        master = open_pty(link)
        scale = StreamScale(ScaleSection(protocol="sics", transport="serial", device=str(link)),
                            events.append)
        task = asyncio.create_task(scale.run())
        got = b""
        while b"SIR\r\n" not in got:
            got += await asyncio.wait_for(asyncio.to_thread(os.read, master, 64), 5)
        os.write(master, sics_line(31420) + sics_line(31400, stable=False))
        await wait_until(lambda: sum(isinstance(e, WeightSample) for e in events) == 2)
        task.cancel()
        os.close(master)
        return events, got

    events, sent = asyncio.run(main())
    samples = [e for e in events if isinstance(e, WeightSample)]
    assert [(s.kg, s.motion) for s in samples] == [(31420, False), (31400, True)]


def test_backoff_doubles_to_a_ceiling_and_resets() -> None:
    b = Backoff(initial_s=0.2, maximum_s=1.0)
    assert [b.next_delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == 0.2


def test_modbus_register_decoding() -> None:
    cfg = ScaleSection(protocol="modbus", transport="modbus_tcp", host="h", port=502)
    # gross = -40 (two words, high first), status stable, decimals 0
    regs = [0xFFFF, 0xFFD8, 0, 0, 0b1, 0]
    assert decode_registers(regs, 0, cfg) == (-40, True)
    regs = [0x0000, 0xBEBC, 0, 0, 0, 1]  # 48828 with one decimal -> 4882 kg
    assert decode_registers(regs, 0, cfg) == (4882, False)


def test_inputs_map_and_relay_frames() -> None:
    io = IoSection(kind="modbus_tcp", host="h", port=502)
    assert inputs_from_bits([True, False, True, False, False, True], 0, io) == Inputs(
        ir_entry=True, loop_entry=True, barrier_down=True)
    assert relay_frame(1, True) == bytes([0xA0, 0x01, 0x01, 0xA2])
    assert relay_frame(2, False) == bytes([0xA0, 0x02, 0x00, 0xA2])
