"""``coalgate sim`` as a process: a whole scenario end to end, signals, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException

from firmware_sim.physics import class_iii_mpe_kg
from tests.sim.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "config" / "scenarios"
COALGATE = [sys.executable, "-c", "from coalgate.cli import main; main()"]


def start(
    tmp_path: Path, scenario: Path, speed: float = 20.0, camera: bool = False,
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    endpoints = tmp_path / "endpoints.json"
    proc = subprocess.Popen(
        [
            *COALGATE,
            "sim",
            "run",
            "--scenario",
            str(scenario),
            "--speed",
            str(speed),
            "--endpoints-out",
            str(endpoints),
            "--truth-out",
            str(tmp_path / "truth.jsonl"),
            "--dev-dir",
            str(tmp_path / "dev"),
            "--camera" if camera else "--no-camera",
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sim exited early: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        return endpoints.exists()

    wait_for(ready, timeout=30, what="the endpoints file")
    return proc, json.loads(endpoints.read_text("utf-8"))


def assert_clean(tmp_path: Path, eps: dict[str, Any], proc: subprocess.Popen[bytes]) -> None:
    assert proc.returncode == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
    assert not (tmp_path / "endpoints.json").exists()
    assert not (tmp_path / "dev").exists(), "device links and their directory are removed"
    ports = [e["tcp"]["port"] for e in eps["serial"].values()]
    ports += [eps["modbus"]["scale_tcp"]["port"], eps["modbus"]["gate_io_tcp"]["port"]]
    if eps["camera"] is not None:
        ports.append(urlsplit(eps["camera"]["snapshot"]).port)
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    assert not Path(f"/proc/{proc.pid}").exists() or _is_zombie_reaped(proc.pid)


def _is_zombie_reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc, eps = start(tmp_path, SCENARIOS / "honest-two-pass.toml", speed=1.0, camera=True)
    assert eps["camera"] is not None
    assert all(Path(e["device"]).is_symlink() for e in eps["serial"].values())
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert_clean(tmp_path, eps, proc)


def test_linger_keeps_serving_after_the_end_until_stopped(tmp_path: Path) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text(
        '[scenario]\nname = "short"\nend_after_s = 2\n\n'
        '[[truck]]\nplate = "陕K12345"\naxles = 6\ntare_kg = 15200\nload_kg = 0\n'
        'arrive_s = 600\n',
        encoding="utf-8",
    )
    # No gate here: the scenario starts at once instead of waiting for one.
    proc, eps = start(tmp_path, scenario, speed=20.0, extra=("--linger", "--start-delay", "0"))
    try:
        truth = tmp_path / "truth.jsonl"
        wait_for(lambda: '"record": "end"' in truth.read_text("utf-8"), timeout=30,
                 what="the end record")
        time.sleep(0.5)
        assert proc.poll() is None, "with --linger the simulator keeps running after the end"
        tcp = eps["modbus"]["scale_tcp"]
        client = ModbusTcpClient(tcp["host"], port=tcp["port"])
        assert client.connect()
        try:
            regs = client.read_holding_registers(0, count=2, device_id=tcp["unit_id"])
            assert not regs.isError()
            assert abs((regs.registers[0] << 16) | regs.registers[1]) <= 100  # an empty platform
        finally:
            client.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert_clean(tmp_path, eps, proc)


def test_whole_scenario_with_a_gate_pc_on_modbus(tmp_path: Path) -> None:
    """A minimal gate PC: weigh when stable, raise the arm, lower it once past the exit loop."""
    # The scenario starts once this gate PC has connected to both Modbus devices.
    proc, eps = start(tmp_path, SCENARIOS / "honest-two-pass.toml", speed=25.0,
                      extra=("--wait-for", "modbus_tcp,gate_io_tcp"))
    scale = ModbusTcpClient("127.0.0.1", port=eps["modbus"]["scale_tcp"]["port"])
    gate = ModbusTcpClient("127.0.0.1", port=eps["modbus"]["gate_io_tcp"]["port"])
    assert scale.connect() and gate.connect()
    weighed: list[int] = []
    was_on_exit_loop = False
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                regs = scale.read_holding_registers(0, count=5, device_id=1).registers
                di = gate.read_discrete_inputs(0, count=6, device_id=1).bits[:6]
            except (ConnectionException, OSError):
                break  # the scenario ended and the simulator closed its ports
            gross, stable = (regs[0] << 16) | regs[1], bool(regs[4] & 1)
            ir_entry, ir_exit, _loop_in, loop_out, up_fb, down_fb = di
            on_and_clear = gross > 1000 and stable and not ir_entry and not ir_exit
            if on_and_clear and down_fb:
                weighed.append(gross)
                gate.write_coil(0, True, device_id=1)
            elif up_fb and was_on_exit_loop and not loop_out:
                gate.write_coil(1, True, device_id=1)  # the truck has passed: close behind it
            was_on_exit_loop = loop_out
            time.sleep(0.05)
    finally:
        scale.close()
        gate.close()
    proc.wait(timeout=20)
    assert_clean(tmp_path, eps, proc)
    lines = [json.loads(x) for x in (tmp_path / "truth.jsonl").read_text("utf-8").splitlines()]
    truths = [r for r in lines if r["record"] == "truth"]
    assert lines[-1]["record"] == "end"
    assert [(t["plate"], t["pass"]) for t in truths] == [
        ("陕K12345", "tare"),
        ("晋A7B321", "tare"),
        ("陕K12345", "gross"),
        ("晋A7B321", "gross"),
    ]
    assert [t["true_on_scale_kg"] for t in truths] == [15200, 14100, 48800, 42600]
    assert all(t["weighed"] and not t["forced_barrier"] for t in truths)
    assert len(weighed) == 4, weighed
    for got, truth in zip(weighed, truths, strict=True):
        assert abs(got - truth["true_on_scale_kg"]) <= class_iii_mpe_kg(got, 20)


def test_bad_scenario_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[scenario]\nname = "x"\n\n[[truck]]\nplate = "陕K1"\naxles = 12\n'
        "tare_kg = 1\nload_kg = 1\narrive_s = 0\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [*COALGATE, "sim", "run", "--scenario", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"{bad}:6: truck[0].axles: Input should be less than or equal to 6" in out.stderr


def test_check_command_and_help_examples() -> None:
    out = subprocess.run(
        [*COALGATE, "sim", "check", *map(str, sorted(SCENARIOS.glob("*.toml")))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": ok (") == len(list(SCENARIOS.glob("*.toml")))
    from firmware_sim.cli import app

    for command in app.registered_commands:
        assert command.callback is not None and "Example:" in (command.callback.__doc__ or "")
