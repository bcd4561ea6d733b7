"""Fixtures: a simulator running in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.runner import Simulator, StartRule
from firmware_sim.scenario import parse_scenario

STANDING_TRUCK = """\
[scenario]
name = "standing"
seed = 11
end_after_s = 100000

[[truck]]
plate = "陕K12345"
axles = 5
tare_kg = 12000
load_kg = 18000
arrive_s = 0
dwell_s = 1
"""


class SimThread:
    """Runs ``Simulator.start/run/stop`` on a private loop; ``stop()`` is thread-safe."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.endpoints: dict[str, Any] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                self.endpoints = await self.sim.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self.sim.run()
            finally:
                await self.sim.stop()

        try:
            asyncio.run(body())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = self._error or exc

    def start(self) -> SimThread:
        self._thread.start()
        assert self._ready.wait(20), "simulator did not start within 20 s"
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the simulator's loop and return its result."""
        assert self._loop is not None
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(5)
        return box[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.sim.request_stop)
        self._thread.join(20)
        assert not self._thread.is_alive(), "simulator thread did not stop"
        if self._error is not None:
            raise self._error


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy (real time; not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def running_sim(tmp_path: Path) -> Iterator[Callable[..., SimThread]]:
    started: list[SimThread] = []

    def start(
        text: str = STANDING_TRUCK,
        *,
        speed: float = 20.0,
        frame_hz: float = 20.0,
        camera: bool = False,
        start_rule: StartRule | None = None,
    ) -> SimThread:
        sim = Simulator(
            parse_scenario(text, "test.toml"),
            speed=speed,
            dev_dir=tmp_path / "dev",
            frame_hz=frame_hz,
            endpoints_out=tmp_path / "endpoints.json",
            camera=camera,
            start=start_rule,
        )
        thread = SimThread(sim).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()
