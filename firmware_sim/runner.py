"""``sim run``: the site, every endpoint, the clock, and a clean stop.

The pure ``Site`` advances on a simulated clock (real elapsed time × speed). Each tick the
runner publishes the reading to every protocol endpoint and picks up gate commands. Stopping
(end of scenario, SIGINT, SIGTERM) closes every port and removes every device link and the
endpoints file this run wrote.

The clock starts by a ``StartRule``: at once, after a fixed real delay, or when the gate under
test is connected (its first Modbus request, serial read or write, TCP connection or camera
fetch). Until then the endpoints serve an empty, idle site at simulated time 0, so how long the
gate takes to come up never decides what it sees (issue 16).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from firmware_sim.indicators import FRAME_ENCODERS, ContinuousIndicator, SicsIndicator
from firmware_sim.modbus_devices import GateIo, ScaleTransmitter
from firmware_sim.protocols.modbus_maps import register_maps
from firmware_sim.relay_board import UsbRelayBoard
from firmware_sim.scenario import Scenario
from firmware_sim.world import Event, Site

__all__ = ["Simulator", "StartRule", "GATE_ENDPOINTS", "END_GRACE_S", "ENDPOINTS_VERSION"]

ENDPOINTS_VERSION = 1
END_GRACE_S = 5.0  # simulated seconds after the last truck leaves before the run ends
TICK_S = 0.02  # real seconds between site updates and Modbus refreshes

# Short names of the endpoints a gate can be connected by (``--wait-for``). The scale ones
# match ``coalgate.sim_site.SCALE_ENDPOINTS`` (the name a site config is generated from).
_INDICATOR_SHORT = {"xk3190": "xk3190", "xk3190_format2": "format2", "toledo": "toledo"}
GATE_ENDPOINTS: tuple[str, ...] = (
    *(f"{short}_{t}" for short in _INDICATOR_SHORT.values() for t in ("pty", "tcp")),
    "sics_pty", "sics_tcp", "modbus_tcp", "modbus_rtu", "gate_io_tcp", "gate_io_rtu",
    "relay", "camera",
)


@dataclass(frozen=True)
class StartRule:
    """When the scenario clock starts.

    ``delay_s`` set: that many real seconds after the endpoints exist (0: at once), whatever
    the gate does. Otherwise, when the gate is connected: on the first contact on any endpoint,
    or — with ``wait_for`` — once every named endpoint (from :data:`GATE_ENDPOINTS`) has seen one.
    """

    delay_s: float | None = None
    wait_for: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.delay_s is not None and self.delay_s < 0:
            raise ValueError(f"start delay must be >= 0 s, got {self.delay_s}")
        if self.delay_s is not None and self.wait_for:
            raise ValueError("give either a start delay or endpoints to wait for, not both")
        unknown = [name for name in self.wait_for if name not in GATE_ENDPOINTS]
        if unknown:
            raise ValueError(f"unknown endpoint(s) {', '.join(unknown)} to wait for; "
                             f"expected some of {', '.join(GATE_ENDPOINTS)}")

    @classmethod
    def now(cls) -> StartRule:
        return cls(delay_s=0.0)

    @classmethod
    def gate(cls, wait_for: Sequence[str] = ()) -> StartRule:
        return cls(wait_for=tuple(wait_for))

    def describe(self) -> dict[str, Any]:
        if self.delay_s is not None:
            return {"start_on": "delay", "delay_s": self.delay_s}
        return {"start_on": "gate", "wait_for": list(self.wait_for) or "any"}

    def due(self, waited_s: float, contacts: Sequence[str]) -> bool:
        """Pure: whether to start, ``waited_s`` real seconds in, with these endpoints seen."""
        if self.delay_s is not None:
            return waited_s >= self.delay_s
        if self.wait_for:
            return all(name in contacts for name in self.wait_for)
        return bool(contacts)


class _Camera(Protocol):
    urls: dict[str, str]

    def start(self) -> object: ...
    def stop(self) -> None: ...
    def show(self, plate: str | None, *, plate_kind: str = "auto") -> object: ...
    def enable_anpr_push(self, url: str) -> None: ...

    on_request: Callable[[], None] | None


def _load_camera(seed: int) -> _Camera | None:
    """The camera engineer's server, when that module is present."""
    try:
        module = importlib.import_module("firmware_sim.camera.server")
    except ImportError:
        return None
    camera: _Camera = module.CameraServer("127.0.0.1", 0, seed=seed)
    return camera


class Simulator:
    """Everything ``sim run`` starts. ``async with Simulator(...)`` or start/run/stop."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        speed: float = 1.0,
        dev_dir: Path | None = None,
        frame_hz: float = 10.0,
        truth: TextIO | None = None,
        truth_path: str | None = None,
        endpoints_out: Path | None = None,
        camera: bool = True,
        anpr_push_url: str | None = None,
        repeat: bool = False,
        linger: bool = False,
        start: StartRule | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.speed = speed
        self.frame_hz = frame_hz
        self.dev_dir = dev_dir or Path(f"/tmp/coalgate-sim-{os.getpid()}")
        self._created_dev_dir = False
        self.site = Site(scenario)
        self._truth = truth
        self._truth_path = truth_path
        self.endpoints_out = endpoints_out
        self._want_camera = camera
        self._anpr_push_url = anpr_push_url
        # Continuous traffic: when every truck has gone, the scenario's trucks come again.
        self.repeat = repeat
        # Keep serving an empty platform after the end, so a gate under test can be stopped
        # before its devices disappear (otherwise it rightly records them going offline).
        self.linger = linger
        self._end_emitted = False
        self.round = 1
        self.camera: _Camera | None = None
        self._shown_plate: str | None = None
        self.continuous: list[ContinuousIndicator] = []
        self.sics: SicsIndicator | None = None
        self.transmitter: ScaleTransmitter | None = None
        self.gate_io: GateIo | None = None
        self.relay: UsbRelayBoard | None = None
        self._stop = asyncio.Event()
        # In-process users drive the site themselves: they start at once unless they ask.
        self.start_rule = start if start is not None else StartRule.now()
        self.started = False
        self._real_start = 0.0
        self._serving_since = 0.0
        self.contacts: dict[str, float] = {}  # endpoint -> real seconds into serving, first seen
        self.events: list[Event] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- clock ----------------------------------------------------------------------------
    def sim_time(self) -> float:
        if not self.started:
            return 0.0
        return (time.monotonic() - self._real_start) * self.speed

    # ---- the gate's first contact ----------------------------------------------------------
    def _contact(self, name: str) -> Callable[[], None]:
        def seen() -> None:
            if name not in self.contacts:
                self.contacts[name] = round(time.monotonic() - self._serving_since, 3)

        return seen

    def _contact_from_thread(self, name: str) -> Callable[[], None]:
        seen = self._contact(name)
        loop = self._loop

        def from_thread() -> None:
            if name not in self.contacts and loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(seen)

        return from_thread

    def _watch_contacts(self) -> None:
        for indicator in self.continuous:
            short = _INDICATOR_SHORT[indicator.name]
            indicator.pty.on_contact = self._contact(f"{short}_pty")
            indicator.tcp.on_contact = self._contact(f"{short}_tcp")
        if self.sics is not None:
            self.sics.pty.on_contact = self._contact("sics_pty")
            self.sics.tcp.on_contact = self._contact("sics_tcp")
        for slave, prefix in ((self.transmitter, "modbus"), (self.gate_io, "gate_io")):
            if slave is not None:
                slave.on_tcp_contact = self._contact(f"{prefix}_tcp")
                slave.on_rtu_contact = self._contact(f"{prefix}_rtu")
        if self.relay is not None:
            self.relay.pty.on_contact = self._contact("relay")
        if self.camera is not None:
            self.camera.on_request = self._contact_from_thread("camera")

    def _maybe_start(self) -> None:
        waited = time.monotonic() - self._serving_since
        seen = sorted(self.contacts, key=lambda name: self.contacts[name])
        if not self.start_rule.due(waited, seen):
            return
        self.started = True
        self._real_start = time.monotonic()
        detail: dict[str, Any] = {"event": "start", "waited_s": round(waited, 3)}
        if self.start_rule.delay_s is not None:
            detail["reason"] = "start_delay" if self.start_rule.delay_s > 0 else "immediate"
        else:
            detail["reason"] = "gate_connected"
            detail["endpoints"] = {name: self.contacts[name] for name in seen}
        self._emit(Event(self.site.t, "event", detail))

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if not self.dev_dir.exists():
            self.dev_dir.mkdir(parents=True)
            self._created_dev_dir = True
        self._serving_since = self._real_start = time.monotonic()
        try:
            for name in FRAME_ENCODERS:
                indicator = ContinuousIndicator(name, self.dev_dir)
                self.continuous.append(indicator)
                await indicator.start()
            self.sics = SicsIndicator(self.dev_dir, self.site.scale, time.monotonic)
            await self.sics.start(loop)
            self.transmitter = ScaleTransmitter(self.site.scale, self.dev_dir)
            await self.transmitter.start(loop)
            self.relay = UsbRelayBoard(self.dev_dir)
            self.relay.start(loop)
            self.gate_io = GateIo(self.site, self.dev_dir, extra_outputs=self.relay.outputs)
            await self.gate_io.start(loop)
            if self._want_camera:
                self.camera = _load_camera(self.scenario.scenario.seed)
                if self.camera is not None:
                    self.camera.start()
                    if self._anpr_push_url:
                        self.camera.enable_anpr_push(self._anpr_push_url)
        except BaseException:
            await self.stop()
            raise
        self._watch_contacts()
        if self.start_rule.delay_s != 0:
            self._emit(Event(self.site.t, "event",
                             {"event": "waiting", **self.start_rule.describe()}))
        self._maybe_start()
        endpoints = self.endpoints()
        if self.endpoints_out is not None:
            tmp = self.endpoints_out.with_name(self.endpoints_out.name + ".tmp")
            tmp.write_text(json.dumps(endpoints, indent=2, ensure_ascii=False) + "\n", "utf-8")
            os.replace(tmp, self.endpoints_out)
        return endpoints

    def endpoints(self) -> dict[str, Any]:
        spec = self.site.scale.spec
        serial: dict[str, Any] = {}
        for indicator in self.continuous:
            serial[indicator.name] = {**indicator.endpoint(), "frame_hz": self.frame_hz}
        if self.sics is not None:
            serial["sics"] = self.sics.endpoint()
        modbus: dict[str, Any] = {}
        if self.transmitter is not None:
            modbus.update(self.transmitter.endpoints())
        if self.gate_io is not None:
            modbus.update(self.gate_io.endpoints())
        return {
            "version": ENDPOINTS_VERSION,
            "scenario": self.scenario.scenario.name,
            "pid": os.getpid(),
            "speed": self.speed,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scale": {
                "capacity_kg": spec.capacity_kg,
                "e_kg": spec.e_kg,
                "decimals": spec.decimals,
                "unit": spec.unit,
            },
            "serial": serial,
            "modbus": modbus,
            "relay": {"usb_relay": self.relay.endpoint()} if self.relay is not None else {},
            "register_maps": register_maps(),
            "camera": dict(self.camera.urls) if self.camera is not None else None,
            "truth_log": self._truth_path,
            "start": self.start_rule.describe(),
        }

    def request_stop(self) -> None:
        self._stop.set()

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self._truth is not None:
            self._truth.write(json.dumps(event.as_json(), ensure_ascii=False) + "\n")
            self._truth.flush()

    def _ended(self, now: float) -> bool:
        end_after = self.scenario.scenario.end_after_s
        if end_after is not None:
            return now >= end_after
        return self.site.finished and now >= self.site.last_activity_t + END_GRACE_S

    async def tick(self) -> None:
        """One update: pick up gate commands, advance the site, publish everywhere."""
        assert self.gate_io is not None and self.transmitter is not None
        await self.gate_io.refresh()
        if not self.started:
            self._maybe_start()
        if self.started:
            for event in self.site.advance(self.sim_time()):
                self._emit(event)
        await self.gate_io.refresh()
        await self.transmitter.refresh()
        if self.sics is not None:
            self.sics.tick()
        if self.camera is not None:
            plate = self.site.camera_plate()
            if plate != self._shown_plate:
                self._shown_plate = plate
                # Rendering a frame takes tens of ms: keep the serial and Modbus servers going.
                await asyncio.to_thread(self.camera.show, plate)

    async def run(self) -> None:
        """Run until the scenario ends or ``request_stop``; frames go out at ``frame_hz``."""
        frame_every = 1.0 / self.frame_hz
        next_frame = time.monotonic()
        while not self._stop.is_set():
            await self.tick()
            now = time.monotonic()
            if now >= next_frame:
                reading = self.site.scale.last
                for indicator in self.continuous:
                    indicator.send(reading, self.site.scale.spec)
                next_frame = max(next_frame + frame_every, now)
            if self.started and not self._end_emitted and self._ended(self.sim_time()):
                if self.repeat and self.scenario.scenario.end_after_s is None:
                    self.round += 1
                    self.site.repeat_traffic()
                    self._emit(Event(self.site.t, "event", {"event": "repeat",
                                                            "round": self.round}))
                else:
                    self._emit(Event(self.site.t, "end", {}))
                    self._end_emitted = True
                    if not self.linger:
                        break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK_S)

    async def stop(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        if self.camera is not None:
            with contextlib.suppress(Exception):
                self.camera.stop()
            self.camera = None
        for indicator in self.continuous:
            await indicator.close(loop)
        self.continuous = []
        if self.sics is not None:
            await self.sics.close(loop)
            self.sics = None
        if self.transmitter is not None:
            await self.transmitter.close(loop)
            self.transmitter = None
        if self.gate_io is not None:
            await self.gate_io.close(loop)
            self.gate_io = None
        if self.relay is not None:
            self.relay.close(loop)
            self.relay = None
        if self.endpoints_out is not None:
            with contextlib.suppress(FileNotFoundError):
                self.endpoints_out.unlink()
        if self._created_dev_dir:
            with contextlib.suppress(OSError):
                self.dev_dir.rmdir()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
