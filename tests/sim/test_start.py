"""The scenario clock waits for the gate (issue 16): nothing happens on the site until the gate
has shown itself on its endpoints, or until an explicit start delay — so how long a gate takes
to come up never decides what it sees. Real ptys, TCP, Modbus and HTTP clients throughout."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from firmware_sim.relay_board import relay_frame
from firmware_sim.runner import GATE_ENDPOINTS, StartRule
from firmware_sim.transports import PtyPort
from tests.sim.conftest import SimThread, wait_for

REPO = Path(__file__).resolve().parents[2]

# A truck already at the entry loop at t = 0: if the clock ran before the gate came, it would
# be on the platform by the time the gate looks.
EARLY_TRUCK = """\
[scenario]
name = "early"
seed = 5

[[truck]]
plate = "陕K12345"
axles = 5
tare_kg = 12000
load_kg = 18000
arrive_s = 0
dwell_s = 1
"""


def event_names(sim: SimThread) -> list[str]:
    return [e.data.get("event", e.record) for e in sim.call(lambda: list(sim.sim.events))]


def start_event(sim: SimThread) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        starts = [e.data for e in sim.call(lambda: list(sim.sim.events))
                  if e.data.get("event") == "start"]
        return starts[0] if starts else None

    event: dict[str, Any] = wait_for(found, timeout=60, what="the simulator's start event")
    return event


def assert_still_waiting(sim: SimThread) -> None:
    """Nothing has touched the endpoints, so nothing may have happened: no elapsed time is
    involved (the site stays at t = 0 however long this took to get here)."""
    assert not sim.call(lambda: sim.sim.started)
    assert event_names(sim) == ["waiting"]
    assert sim.call(lambda: sim.sim.site.t) == 0.0
    assert [v.state for v in sim.sim.site.visits] == ["scheduled"]


def read_pty(eps: dict[str, Any], key: str) -> None:
    with serial.Serial(eps["serial"][key]["device"], 9600, timeout=5) as port:
        assert port.read(1), f"no frame from the {key} pty"


def connect_tcp(eps: dict[str, Any], key: str) -> None:
    tcp = eps["serial"][key]["tcp"]
    with socket.create_connection((tcp["host"], tcp["port"]), timeout=5) as conn:
        assert conn.recv(1), f"no frame from the {key} TCP port"


def sics_pty(eps: dict[str, Any]) -> None:
    with serial.Serial(eps["serial"]["sics"]["device"], 9600, timeout=5) as port:
        port.write(b"SI\r\n")
        assert port.readline().startswith(b"S "), "no SICS answer on the pty"


def modbus_tcp(eps: dict[str, Any], key: str) -> None:
    ep = eps["modbus"][key]
    client = ModbusTcpClient(ep["host"], port=ep["port"])
    assert client.connect(), f"Modbus TCP {key} refused the connection"
    try:
        assert not client.read_discrete_inputs(0, count=6, device_id=ep["unit_id"]).isError()
    finally:
        client.close()


def modbus_rtu(eps: dict[str, Any], key: str) -> None:
    ep = eps["modbus"][key]
    client = ModbusSerialClient(ep["device"], baudrate=9600, timeout=5)
    assert client.connect()
    try:
        assert not client.read_holding_registers(0, count=2, device_id=ep["unit_id"]).isError()
    finally:
        client.close()


def relay(eps: dict[str, Any]) -> None:
    with serial.Serial(eps["relay"]["usb_relay"]["device"], 9600, timeout=5) as port:
        port.write(relay_frame(3, True))  # the red light: every gate's first command


def camera(eps: dict[str, Any]) -> None:
    r = httpx.get(eps["camera"]["snapshot"], timeout=10)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


# Each way a gate shows itself, and the endpoint name it is recorded under.
GATES: dict[str, Callable[[dict[str, Any]], None]] = {
    "xk3190_pty": lambda eps: read_pty(eps, "xk3190"),
    "toledo_pty": lambda eps: read_pty(eps, "toledo"),
    "format2_tcp": lambda eps: connect_tcp(eps, "xk3190_format2"),
    "sics_pty": sics_pty,
    "modbus_tcp": lambda eps: modbus_tcp(eps, "scale_tcp"),
    "modbus_rtu": lambda eps: modbus_rtu(eps, "scale_rtu"),
    "gate_io_tcp": lambda eps: modbus_tcp(eps, "gate_io_tcp"),
    "relay": relay,
    "camera": camera,
}


@pytest.mark.parametrize("endpoint", sorted(GATES))
def test_the_scenario_starts_when_the_gate_connects(
    running_sim: Callable[..., SimThread], endpoint: str
) -> None:
    sim = running_sim(EARLY_TRUCK, speed=20.0, camera=endpoint == "camera",
                      start_rule=StartRule.gate())
    assert sim.endpoints["start"] == {"start_on": "gate", "wait_for": "any"}
    assert_still_waiting(sim)
    GATES[endpoint](sim.endpoints)
    event = start_event(sim)
    assert event["reason"] == "gate_connected"
    assert endpoint in event["endpoints"], event
    # The truck arrives at its own arrive_s on the started clock, after the start event.
    wait_for(lambda: "arrived" in event_names(sim), timeout=60, what="the truck's arrival")
    names = event_names(sim)
    assert names.index("waiting") < names.index("start") < names.index("arrived"), names


def test_a_pty_client_is_seen_however_early_it_comes(tmp_path: Path) -> None:
    """The gate may open the pty before the first frame, read a little, and be slow after:
    still seen (it set the line up), with no timing involved."""
    seen: list[str] = []
    pty = PtyPort(tmp_path / "ttyTEST")
    try:
        pty.on_contact = lambda: seen.append("pty")
        pty.write(b"frame-0\r\n")
        assert seen == [], "no client yet"
        with serial.Serial(str(pty.link), 9600, timeout=5) as port:  # opens before frame 1
            pty.write(b"frame-1\r\n")
            assert port.read(1)
        pty.write(b"frame-2\r\n")
        assert seen == ["pty"]
        pty.write(b"frame-3\r\n")
        assert seen == ["pty"], "reported once"
    finally:
        pty.close()


def test_wait_for_every_named_endpoint(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim(EARLY_TRUCK, start_rule=StartRule.gate(["xk3190_pty", "gate_io_tcp"]))
    eps = sim.endpoints
    assert eps["start"] == {"start_on": "gate", "wait_for": ["xk3190_pty", "gate_io_tcp"]}
    GATES["gate_io_tcp"](eps)
    wait_for(lambda: "gate_io_tcp" in sim.call(lambda: dict(sim.sim.contacts)), timeout=60,
             what="the gate IO contact to be recorded")
    assert_still_waiting(sim)  # one of the two is not enough
    connect_tcp(eps, "xk3190")  # a contact the rule does not name changes nothing
    wait_for(lambda: "xk3190_tcp" in sim.call(lambda: dict(sim.sim.contacts)), timeout=60,
             what="the xk3190 TCP contact to be recorded")
    assert_still_waiting(sim)
    GATES["xk3190_pty"](eps)
    event = start_event(sim)
    assert {"xk3190_pty", "gate_io_tcp"} <= set(event["endpoints"]), event


def test_start_delay_starts_without_a_gate(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim(EARLY_TRUCK, start_rule=StartRule(delay_s=0.5))
    event = start_event(sim)
    assert event["reason"] == "start_delay" and event["waited_s"] >= 0.5
    assert "endpoints" not in event
    assert event_names(sim)[0] == "waiting"


def test_in_process_default_starts_at_once(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim(EARLY_TRUCK)
    assert sim.endpoints["start"] == {"start_on": "delay", "delay_s": 0.0}
    assert start_event(sim)["reason"] == "immediate"
    assert event_names(sim)[0] == "start"


def test_start_rule_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="unknown endpoint.*ttyUSB0.*expected some of"):
        StartRule.gate(["ttyUSB0"])
    with pytest.raises(ValueError, match="either"):
        StartRule(delay_s=1.0, wait_for=("camera",))
    with pytest.raises(ValueError, match=">= 0"):
        StartRule(delay_s=-1.0)
    rule = StartRule.gate(["xk3190_pty"])
    assert not rule.due(1e6, [])
    assert not rule.due(0.0, ["gate_io_tcp"])
    assert rule.due(0.0, ["gate_io_tcp", "xk3190_pty"])
    assert StartRule.gate().due(0.0, ["camera"]) and not StartRule.gate().due(1e6, [])
    assert StartRule(delay_s=2.0).due(2.0, []) and not StartRule(delay_s=2.0).due(1.9, ["relay"])
    assert set(GATES) <= set(GATE_ENDPOINTS)


def test_cli_rejects_an_unknown_wait_for_name(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "coalgate", "sim", "run", "--scenario",
         str(REPO / "config" / "scenarios" / "honest-one-pass.toml"),
         "--wait-for", "xk3190_pty,scale", "--dev-dir", str(tmp_path / "dev")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "unknown endpoint(s) scale" in out.stderr and "xk3190_pty" in out.stderr
    assert not (tmp_path / "dev").exists()


def test_cli_truth_log_says_when_and_why_it_started(tmp_path: Path) -> None:
    """Over the real CLI: the gate (a Modbus master) connects late; the truth log shows the
    wait, then the start naming the endpoint, then the trucks."""
    endpoints, truth = tmp_path / "ep.json", tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "coalgate", "sim", "run", "--scenario",
         str(REPO / "config" / "scenarios" / "honest-one-pass.toml"), "--speed", "20",
         "--endpoints-out", str(endpoints), "--truth-out", str(truth),
         "--dev-dir", str(tmp_path / "dev"), "--no-camera", "--wait-for", "modbus_tcp"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(endpoints.exists, timeout=60, what="the endpoints file")
        eps = json.loads(endpoints.read_text("utf-8"))
        assert eps["start"] == {"start_on": "gate", "wait_for": ["modbus_tcp"]}

        def records() -> list[dict[str, Any]]:
            return [json.loads(x) for x in truth.read_text("utf-8").splitlines()]

        wait_for(truth.exists, timeout=60, what="the truth log")
        assert [r["event"] for r in records()] == ["waiting"]
        GATES["modbus_tcp"](eps)
        wait_for(lambda: any(r.get("event") == "arrived" for r in records()), timeout=60,
                 what="the first truck to arrive after the gate connected")
        got = records()
        assert got[0]["event"] == "waiting" and got[1]["event"] == "start"
        assert list(got[1]["endpoints"]) == ["modbus_tcp"] and got[1]["t"] == 0.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
