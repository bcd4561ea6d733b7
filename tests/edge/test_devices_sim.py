"""Edge device adapters against the simulator's real endpoints: Modbus TCP and RTU (pty), the
gate IO board, the USB serial relay board, and devices that go away and come back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from edge_agent.config import CoilMap, IoSection, ScaleSection
from edge_agent.devices.io import ModbusIO, UsbRelayIO
from edge_agent.devices.scale import ModbusScale
from edge_agent.devices.streams import DeviceLost
from edge_agent.gate.controller import GateController
from edge_agent.gate.events import DeviceStatus, Event, Inputs, Record, Signals, WeightSample
from edge_agent.gate.policy import GatePolicy
from firmware_sim.modbus_devices import ModbusSlave
from firmware_sim.physics import class_iii_mpe_kg
from firmware_sim.protocols.modbus_maps import DISCRETE_INPUTS
from firmware_sim.relay_board import RelayCommand
from firmware_sim.runner import Simulator
from firmware_sim.scenario import parse_scenario
from tests.sim.conftest import STANDING_TRUCK, SimThread, wait_for

TRUE_KG = 30_000
MPE = class_iii_mpe_kg(TRUE_KG, 20)
RELAY_COILS = CoilMap(barrier_up=1, barrier_down=2, light_red=3, light_green=4, horn=5)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimThread]:
    s = Simulator(parse_scenario(STANDING_TRUCK, "test.toml"), speed=20.0,
                  dev_dir=tmp_path / "dev", frame_hz=20.0, camera=False)
    thread = SimThread(s).start()
    yield thread
    thread.stop()


def on_sim(sim: SimThread, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on the simulator's own loop (it lives in another thread)."""
    loop = sim._loop
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(make(), loop).result(10)


def standing(sim: SimThread) -> None:
    def ready() -> bool:
        return bool(sim.sim.site.visits[0].state == "standing" and sim.sim.site.scale.last.stable)

    wait_for(ready, what="the truck to stand with a stable reading")


async def until(pred: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def scale_cfg(sim: SimThread, transport: str) -> ScaleSection:
    eps = sim.endpoints["modbus"]
    if transport == "modbus_tcp":
        ep = eps["scale_tcp"]
        return ScaleSection(protocol="modbus", transport="modbus_tcp", host=ep["host"],
                            port=ep["port"], poll_ms=50)
    return ScaleSection(protocol="modbus", transport="modbus_rtu",
                        device=eps["scale_rtu"]["device"], poll_ms=50)


def io_cfg(sim: SimThread, kind: str) -> IoSection:
    eps = sim.endpoints["modbus"]
    if kind == "modbus_tcp":
        ep = eps["gate_io_tcp"]
        return IoSection(kind="modbus_tcp", host=ep["host"], port=ep["port"], poll_ms=50)
    return IoSection(kind="modbus_rtu", device=eps["gate_io_rtu"]["device"], poll_ms=50)


def statuses(events: list[Event]) -> list[bool]:
    return [e.online for e in events if isinstance(e, DeviceStatus)]


# ------------------------------------------------------------------ scale transmitter


@pytest.mark.parametrize("transport", ["modbus_tcp", "modbus_rtu"])
def test_modbus_scale_reads_weight_and_stable_bit(sim: SimThread, transport: str) -> None:
    standing(sim)

    async def main() -> list[Event]:
        events: list[Event] = []
        scale = ModbusScale(scale_cfg(sim, transport), events.append)
        task = asyncio.create_task(scale.run())
        await until(lambda: sum(isinstance(e, WeightSample) for e in events) >= 5,
                    "five readings from the transmitter")
        await stop(task)
        return events

    events = asyncio.run(main())
    assert statuses(events) == [True]
    samples = [e for e in events if isinstance(e, WeightSample)]
    # The truck stands still: every reading is the true gross within class III, flagged stable.
    assert all(abs(s.kg - TRUE_KG) <= MPE and not s.motion for s in samples), samples


def test_modbus_scale_sees_motion_while_the_truck_drives_off(sim: SimThread) -> None:
    standing(sim)

    async def main() -> list[Event]:
        events: list[Event] = []
        scale = ModbusScale(scale_cfg(sim, "modbus_rtu"), events.append)
        task = asyncio.create_task(scale.run())
        await until(lambda: any(isinstance(e, WeightSample) for e in events), "a reading")
        # Let the truck go (barrier up through the TCP gate IO): the load falls in steps.
        gate = sim.endpoints["modbus"]["gate_io_tcp"]
        client = ModbusTcpClient(gate["host"], port=gate["port"])
        assert client.connect()
        client.write_coil(0, True, device_id=1)
        client.close()
        await until(lambda: any(isinstance(e, WeightSample) and e.motion for e in events),
                    "a reading in motion")
        await until(lambda: any(isinstance(e, WeightSample) and abs(e.kg) <= MPE
                                and not e.motion for e in events), "a stable zero")
        await stop(task)
        return events

    samples = [e for e in asyncio.run(main()) if isinstance(e, WeightSample)]
    assert samples[0].kg == pytest.approx(TRUE_KG, abs=MPE) and not samples[0].motion


# ------------------------------------------------------------------ gate IO board


@pytest.mark.parametrize("kind", ["modbus_rtu", "modbus_tcp"])
def test_gate_io_reads_inputs_and_raises_the_barrier(sim: SimThread, kind: str) -> None:
    standing(sim)

    async def main() -> tuple[list[Event], ModbusIO]:
        events: list[Event] = []
        io = ModbusIO(io_cfg(sim, kind), events.append)
        task = asyncio.create_task(io.run())
        await until(lambda: io.online and io.last is not None, "the first input snapshot")
        assert io.last == Inputs(barrier_down=True)  # truck within the beams, barrier down
        await io.signals(Signals(red=False, green=True, horn=False))
        await io.barrier(True)
        await until(lambda: io.last is not None and io.last.barrier_up, "barrier-up feedback")
        await stop(task)
        return events, io

    events, io = asyncio.run(main())
    assert statuses(events) == [True]
    assert sim.sim.site.outputs.light_green and not sim.sim.site.outputs.light_red
    assert (0, True) in io.coil_writes  # barrier_up coil
    # The barrier travels: feedback went from down, through neither, to up.
    seen = [(e.barrier_down, e.barrier_up) for e in events if isinstance(e, Inputs)]
    assert seen[0] == (True, False) and seen[-1][1]


def test_gate_io_rtu_endpoint_shares_coils_with_tcp(sim: SimThread) -> None:
    """One board, two ports: a coil written over RTU is read back over TCP."""

    async def main() -> None:
        io = ModbusIO(io_cfg(sim, "modbus_rtu"), lambda e: None)
        task = asyncio.create_task(io.run())
        await until(lambda: io.online, "the RTU board online")
        await io.signals(Signals(red=True, green=False, horn=True))
        await stop(task)

    asyncio.run(main())
    gate = sim.endpoints["modbus"]["gate_io_tcp"]
    client = ModbusTcpClient(gate["host"], port=gate["port"])
    assert client.connect()
    rr = client.read_coils(0, count=5, device_id=1)
    di = client.read_discrete_inputs(0, count=len(DISCRETE_INPUTS), device_id=1)
    client.close()
    assert list(rr.bits[:5]) == [False, False, True, False, True]
    assert di.bits[DISCRETE_INPUTS["barrier_down_fb"]]


# ------------------------------------------------------------------ USB relay board


def test_usb_relay_board_raises_the_barrier(sim: SimThread) -> None:
    standing(sim)
    ep = sim.endpoints["relay"]["usb_relay"]
    assert ep["wiring"] == {"barrier_up": 1, "barrier_down": 2, "light_red": 3,
                            "light_green": 4, "horn": 5}
    cfg = IoSection(kind="usb_relay", device=ep["device"], coils=RELAY_COILS, pulse_ms=100)

    async def main() -> UsbRelayIO:
        relay = UsbRelayIO(cfg, lambda e: None)
        task = asyncio.create_task(relay.run())
        await until(lambda: relay.online, "the relay board online")
        await relay.signals(Signals(red=False, green=True, horn=False))
        await relay.barrier(True)
        await until(lambda: sim.sim.site.barrier.is_up, "the barrier up")
        await stop(task)
        return relay

    relay = asyncio.run(main())
    board = sim.sim.relay
    assert board is not None
    # Exactly the LCUS frames: A0 <channel> <state> <sum>, the barrier pulsed on then off.
    assert relay.frames_sent[-2:] == [bytes.fromhex("A0 01 01 A2"), bytes.fromhex("A0 01 00 A1")]
    assert board.commands[-2:] == [RelayCommand(1, True), RelayCommand(1, False)]
    assert RelayCommand(4, True) in board.commands and sim.sim.site.outputs.light_green
    assert board.decoder.bad_sum == board.decoder.bad_channel == 0
    # The Modbus board's feedback input agrees (independent path through the same site).
    gate = sim.endpoints["modbus"]["gate_io_tcp"]
    client = ModbusTcpClient(gate["host"], port=gate["port"])
    assert client.connect()
    di = client.read_discrete_inputs(0, count=len(DISCRETE_INPUTS), device_id=1)
    client.close()
    assert di.bits[DISCRETE_INPUTS["barrier_up_fb"]]


def test_usb_relay_unplugged_is_reported_fails_closed_and_comes_back(sim: SimThread) -> None:
    ep = sim.endpoints["relay"]["usb_relay"]
    cfg = IoSection(kind="usb_relay", device=ep["device"], coils=RELAY_COILS, pulse_ms=50)
    loop = sim._loop
    assert loop is not None and sim.sim.relay is not None
    board = sim.sim.relay

    async def main() -> list[Event]:
        events: list[Event] = []
        relay = UsbRelayIO(cfg, events.append)
        task = asyncio.create_task(relay.run())
        await until(lambda: relay.online, "the relay board online")
        sim.call(lambda: board.unplug(loop))
        await until(lambda: not relay.online, "the relay board reported offline")
        with pytest.raises(DeviceLost, match="offline"):
            await relay.barrier(True)
        await until(lambda: relay.backoff.pending_s >= 0.8, "reconnect attempts backing off")
        sim.call(lambda: board.plug(loop))
        await until(lambda: relay.online, "the relay board back online")
        assert relay.backoff.pending_s == relay.backoff.initial_s
        await stop(task)
        return events

    events = asyncio.run(main())
    assert statuses(events) == [True, False, True]
    assert sim.sim.site.barrier.is_down  # the failed command was not replayed on reconnect


# ------------------------------------------------------------------ Modbus devices that go away


def feed_controller(events: list[Event]) -> list[Record]:
    """What the runtime does with the adapter's events: the gate controller's records."""
    ctrl = GateController(GatePolicy("S1"))
    out: list[Record] = []
    for ev in events:
        if isinstance(ev, DeviceStatus):
            out += [a for a in ctrl.handle(ev, 0) if isinstance(a, Record)]
    return out


@pytest.mark.parametrize("transport", ["modbus_tcp", "modbus_rtu"])
def test_modbus_scale_timeout_is_reported_and_reconnects(sim: SimThread, transport: str) -> None:
    standing(sim)
    transmitter = sim.sim.transmitter
    assert transmitter is not None
    slave: ModbusSlave = transmitter

    async def main() -> tuple[list[Event], int]:
        events: list[Event] = []
        scale = ModbusScale(scale_cfg(sim, transport), events.append)
        task = asyncio.create_task(scale.run())
        await until(lambda: scale.online, "the transmitter online")
        on_sim(sim, lambda: slave.set_answering(False))
        await until(lambda: not scale.online, "the transmitter reported offline")
        await until(lambda: scale.backoff.pending_s >= 0.8, "reconnect attempts backing off")
        polls = scale.polls
        on_sim(sim, lambda: slave.set_answering(True))
        await until(lambda: scale.online and scale.polls > polls + 3, "readings again")
        assert scale.backoff.pending_s == scale.backoff.initial_s
        await stop(task)
        return events, polls

    events, polls = asyncio.run(main())
    assert statuses(events) == [True, False, True]
    offline = next(e for e in events if isinstance(e, DeviceStatus) and not e.online)
    assert offline.device == "scale" and offline.detail["error"]
    after = events[events.index(offline) + 1 :]
    assert all(abs(e.kg - TRUE_KG) <= MPE for e in after if isinstance(e, WeightSample))
    records = feed_controller(events)
    assert [(r.kind, r.body.get("state") or r.body.get("code")) for r in records] == [
        ("device", "offline"), ("alarm", "device_offline"), ("device", "online")]


@pytest.mark.parametrize("kind", ["modbus_rtu", "modbus_tcp"])
def test_gate_io_timeout_fails_closed_and_reconnects(sim: SimThread, kind: str) -> None:
    standing(sim)
    gate_io = sim.sim.gate_io
    assert gate_io is not None
    slave: ModbusSlave = gate_io

    async def main() -> tuple[list[Event], ModbusIO]:
        events: list[Event] = []
        io = ModbusIO(io_cfg(sim, kind), events.append)
        task = asyncio.create_task(io.run())
        await until(lambda: io.online, "the gate IO online")
        on_sim(sim, lambda: slave.set_answering(False))
        await until(lambda: not io.online, "the gate IO reported offline")
        with pytest.raises(DeviceLost, match="offline"):
            await io.barrier(True)
        await until(lambda: io.backoff.pending_s >= 0.8, "reconnect attempts backing off")
        on_sim(sim, lambda: slave.set_answering(True))
        await until(lambda: io.online and io.last is not None, "fresh inputs after reconnect")
        await stop(task)
        return events, io

    events, io = asyncio.run(main())
    assert statuses(events) == [True, False, True]
    assert (0, True) not in io.coil_writes
    assert sim.sim.site.barrier.is_down  # nothing raised it while offline, nor after
    # The first snapshot after the reconnect is reported again (it may equal the old one).
    back = events.index(next(e for e in events if isinstance(e, DeviceStatus) and not e.online))
    assert any(isinstance(e, Inputs) for e in events[back:])
    records = feed_controller(events)
    assert [(r.kind, r.body.get("state") or r.body.get("code")) for r in records] == [
        ("device", "offline"), ("alarm", "device_offline"), ("device", "online")]
    assert records[1].body["detail"]["device"] == "io"
