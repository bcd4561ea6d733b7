"""Plates in the gate against the real simulator and its camera (``coalgate sim run``): the
agent reads the plate from the camera's JPEG snapshots itself (no ANPR push by the test)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge.simrun import SimRun

pytestmark = pytest.mark.slow


class ReaderRun(SimRun):
    """The gate PC reads plates from the simulator camera; ``rear`` pushes the truck's true
    plate as a rear ANPR camera would (a swapped front plate then disagrees with it)."""

    rear: bool = False
    scenario_file: Path | None = None

    @property
    def scenario_path(self) -> Path:
        return self.scenario_file or super().scenario_path

    def write_config(self, port: int) -> Path:
        cfg = super().write_config(port)
        cam = self.endpoints["camera"]
        assert cam, "the simulator started without its camera"
        text = cfg.read_text(encoding="utf-8").replace(
            "[camera]\nanpr_push = true",
            f'[camera]\nanpr_push = true\nsnapshot_url = "{cam["snapshot"]}"\n'
            "read_plates = true\nframes = 3\nframe_interval_ms = 100")
        cfg.write_text(text, encoding="utf-8")
        return cfg

    def play_camera(self) -> None:
        if not self.rear:
            return
        for rec in self.truth():
            if rec.get("event") == "arrived" and (rec["plate"], rec["t"]) not in self.pushed:
                self.pushed.add((rec["plate"], rec["t"]))
                httpx.post(self.console + "/device/anpr", json={
                    "plate": rec["plate"], "confidence": 0.95, "camera": "rear"},
                    headers=self.device_auth, timeout=2)


@pytest.fixture
def reader_run(tmp_path: Path) -> Iterator[Any]:
    runs: list[ReaderRun] = []

    def make(scenario: str, rear: bool = False, scenario_file: Path | None = None,
             **kw: Any) -> ReaderRun:
        # Speed 3 and a 10 s identify wait: reading runs in real time on one core.
        kw.setdefault("policy", {}).setdefault("identify_timeout_s", 10.0)
        r = ReaderRun(scenario, tmp_path, speed=3.0, **kw)
        r.rear = rear
        r.scenario_file = scenario_file
        runs.append(r)
        r.start_sim()
        r.start_agent()
        return r

    yield make
    for r in runs:
        r.stop()


def test_honest_trucks_plates_are_read_from_camera_frames(reader_run: Any) -> None:
    r = reader_run("honest-two-pass", scale_endpoint="xk3190_pty")
    r.run_until(r.sim_ended, 300, what="the end of the scenario (the simulator's end record)")
    weighings_seen = httpx.get(r.console + "/api/transactions").json()
    assert r.stop_agent() == 0, r.agent_log()
    entries = r.entries()
    assert [b for _, k, b in entries if k == "alarm"] == []
    w = [b for _, k, b in entries if k == "weighing"]
    truth = [t for t in r.truth() if t.get("record") == "truth"]
    assert [x["plate"] for x in w] == [t["plate"] for t in truth]
    assert all(x["plate_source"] == "reader" and x["decision"] == "release" for x in w), w
    assert all(900 <= x["plate_conf_pm"] <= 1000 for x in w), w
    for x in w:  # the snapshot the plate was read from is kept, named by its hash
        jpg = (r.tmp / "snapshots" / f"{x['snapshot_sha256']}.jpg").read_bytes()
        assert hashlib.sha256(jpg).hexdigest() == x["snapshot_sha256"] and jpg[:2] == b"\xff\xd8"
    assert len(weighings_seen) == 4


def test_swapped_front_plate_is_a_plate_mismatch_and_held(reader_run: Any,
                                                          tmp_path: Path) -> None:
    """套牌: the front plate shown to the camera is not the truck's (its rear plate is)."""
    scen = tmp_path / "swap.toml"
    scen.write_text("""
[scenario]
name = "plate-swap"
seed = 3
[[truck]]
plate = "陕K12345"
axles = 6
tare_kg = 15200
load_kg = 33600
arrive_s = 2
passes = "one"
dwell_s = 4
[[truck.cheat]]
kind = "plate_swap"
pass = "gross"
shown_plate = "陕K99999"
""", encoding="utf-8")
    r = reader_run("plate-swap", rear=True, scenario_file=scen)
    r.run_until(lambda: httpx.get(r.console + "/api/state").json()["decision"] is not None, 300,
                what="the gate's decision on the swapped-plate truck")
    st = httpx.get(r.console + "/api/state").json()
    assert st["decision"]["decision"] == "hold", st
    bad = httpx.post(r.console + "/device/anpr", json={"AlarmInfoPlate": {"heartbeat": 1}},
                     headers=r.device_auth)
    assert bad.status_code == 422 and "PlateResult" in bad.json()["detail"]
    assert "plate_mismatch" in st["decision"]["reasons"], st
    assert r.stop_agent() == 0, r.agent_log()
    entries = r.entries()
    w = [b for _, k, b in entries if k == "weighing"]
    assert len(w) == 1 and w[0]["decision"] == "hold" and "plate_mismatch" in w[0]["reasons"]
    assert w[0]["plate"] == "陕K99999" and w[0]["plate_source"] == "reader"  # what it showed
    assert "plate_mismatch" in [b["code"] for _, k, b in entries if k == "alarm"]
    assert not [b for _, k, b in entries if k == "barrier" and b["action"] == "up"]
