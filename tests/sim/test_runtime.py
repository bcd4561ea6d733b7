"""The running simulator through real transports: ptys, TCP, Modbus TCP/RTU, and mbpoll."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from firmware_sim.physics import class_iii_mpe_kg
from tests.sim.conftest import STANDING_TRUCK, SimThread, wait_for
from tests.sim.test_protocols import decode_toledo, decode_xk_tf0

TRUE_KG = 30_000
MPE = class_iii_mpe_kg(TRUE_KG, 20)


def standing(sim: SimThread) -> None:
    """Wait until the truck stands on the platform and the reading is stable."""

    def ready() -> bool:
        visits = sim.sim.site.visits
        return visits[0].state == "standing" and sim.sim.site.scale.last.stable

    wait_for(ready, what="the truck to stand with a stable reading")


def read_frames(port: serial.Serial, pattern: re.Pattern[bytes], n: int = 5) -> list[bytes]:
    buf = b""
    frames: list[bytes] = []

    def more() -> bool:
        nonlocal buf
        buf += port.read(64)
        frames[:] = pattern.findall(buf)
        return len(frames) >= n

    wait_for(more, what="frames on the serial device")
    return frames


XK = re.compile(rb"\x02[+-]\d{7}[0-9A-F]{2}\x03")
F2 = re.compile(rb"=[0-9.]{6,7}[+-]")
TOLEDO = re.compile(rb"\x02[\x20-\x7f]{3}\d{12}\r[\x00-\x7f]", re.S)


def test_endpoints_json_lists_every_endpoint(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    written = json.loads(Path(sim.sim.endpoints_out).read_text("utf-8"))  # type: ignore[arg-type]
    assert written["version"] == 1 and written["scenario"] == "standing"
    assert set(written["serial"]) == {"xk3190", "xk3190_format2", "toledo", "sics"}
    assert set(written["modbus"]) == {"scale_tcp", "scale_rtu", "gate_io_tcp", "gate_io_rtu"}
    for ep in written["serial"].values():
        assert Path(ep["device"]).resolve().as_posix().startswith("/dev/pts/")
        assert ep["tcp"]["port"] > 0
    maps = written["register_maps"]
    assert maps["weighing_transmitter"]["holding_registers"]["gross"] == {
        "address": 0,
        "count": 2,
        "type": "int32",
    }
    assert maps["gate_io"]["discrete_inputs"]["barrier_down_fb"] == 5
    assert written["camera"] is None


def test_pyserial_receives_continuous_frames_on_every_device(
    running_sim: Callable[..., SimThread],
) -> None:
    sim = running_sim()
    standing(sim)
    serial_eps = sim.endpoints["serial"]
    with serial.Serial(serial_eps["xk3190"]["device"], 9600, timeout=0.2) as port:
        frames = read_frames(port, XK)
    values = [decode_xk_tf0(f) for f in frames]
    assert all(abs(v - TRUE_KG) <= MPE and d == 0 for v, d in values), values
    with serial.Serial(serial_eps["xk3190_format2"]["device"], 9600, timeout=0.2) as port:
        frames = read_frames(port, F2)
    assert all(abs(int(f[1:-1][::-1]) - TRUE_KG) <= MPE for f in frames), frames
    with serial.Serial(serial_eps["toledo"]["device"], 9600, timeout=0.2) as port:
        frames = read_frames(port, TOLEDO)
    decoded = [decode_toledo(f) for f in frames]
    assert all(abs(int(d["weight"]) - TRUE_KG) <= MPE for d in decoded)  # type: ignore[call-overload]
    assert not decoded[-1]["motion"]


def test_tcp_clients_receive_the_same_frames(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    standing(sim)
    tcp = sim.endpoints["serial"]["xk3190"]["tcp"]
    with socket.create_connection((tcp["host"], tcp["port"]), timeout=5) as conn:
        buf = b""
        while len(XK.findall(buf)) < 3:
            buf += conn.recv(256)
    value, _ = decode_xk_tf0(XK.findall(buf)[-1])
    assert abs(value - TRUE_KG) <= MPE


def sics_exchange(write: Callable[[bytes], object], readline: Callable[[], bytes], cmd: str) -> str:
    write(cmd.encode() + b"\r\n")
    line = readline()
    assert line.endswith(b"\r\n"), line
    return line[:-2].decode()


def test_sics_over_pty_and_tcp(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    standing(sim)
    eps = sim.endpoints["serial"]["sics"]
    with serial.Serial(eps["device"], 9600, timeout=5) as port:
        line = sics_exchange(port.write, port.readline, "S")
        m = re.fullmatch(r"S S (.{10}) kg", line)
        assert m and abs(int(m[1]) - TRUE_KG) <= MPE, line
        assert sics_exchange(port.write, port.readline, "Z") == "Z +"  # 30 t is outside zero range
        assert sics_exchange(port.write, port.readline, "BOGUS") == "ES"
        first = sics_exchange(port.write, port.readline, "SIR")
        assert first.startswith("S S ")
        assert port.readline().startswith(b"S "), "SIR keeps sending"
        port.write(b"@\r\n")
        # Lines already queued by SIR may come first; the identification follows.
        wait_for(lambda: port.readline().startswith(b'I4 A "'), what="the @ answer")
    with socket.create_connection((eps["tcp"]["host"], eps["tcp"]["port"]), timeout=5) as conn:
        reader = conn.makefile("rb")
        line = sics_exchange(conn.sendall, reader.readline, "SI")
        assert re.fullmatch(r"S [SD] .{10} kg", line)
        tare = sics_exchange(conn.sendall, reader.readline, "T")
        assert tare.startswith("T S ")
        assert sics_exchange(conn.sendall, reader.readline, "TAC") == "TAC A"


def test_modbus_tcp_and_rtu_weight_status_and_commands(
    running_sim: Callable[..., SimThread],
) -> None:
    sim = running_sim()
    standing(sim)
    eps = sim.endpoints["modbus"]
    tcp = ModbusTcpClient(eps["scale_tcp"]["host"], port=eps["scale_tcp"]["port"])
    assert tcp.connect()
    try:
        rr = tcp.read_holding_registers(0, count=12, device_id=1)
        assert not rr.isError()
        gross = (rr.registers[0] << 16) | rr.registers[1]
        assert abs(gross - TRUE_KG) <= MPE
        assert rr.registers[4] & 1, "stable bit"
        assert rr.registers[5] == 0 and rr.registers[6] == 20
        ir = tcp.read_input_registers(0, count=2, device_id=1)
        assert abs(((ir.registers[0] << 16) | ir.registers[1]) - TRUE_KG) <= MPE
        assert not tcp.write_register(20, 2, device_id=1).isError()  # tare

        def net_mode() -> bool:
            regs = tcp.read_holding_registers(0, count=12, device_id=1).registers
            return bool(regs[4] & 0b1000) and regs[2] == 0 and abs(regs[3]) <= 40

        wait_for(net_mode, what="net mode after the tare command")
    finally:
        tcp.close()
    rtu = ModbusSerialClient(eps["scale_rtu"]["device"], baudrate=9600, timeout=2)
    assert rtu.connect()
    try:
        rr = rtu.read_holding_registers(0, count=5, device_id=1)
        assert not rr.isError(), rr
        assert abs(((rr.registers[0] << 16) | rr.registers[1]) - TRUE_KG) <= MPE
    finally:
        rtu.close()


def mbpoll(*args: str) -> list[int]:
    exe = shutil.which("mbpoll")
    assert exe, "mbpoll is missing: run scripts/setup test (Debian package mbpoll)"
    out = subprocess.run([exe, *args, "-1"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    return [int(v) for v in re.findall(r"^\[\d+\]:\s+(-?\d+)", out.stdout, re.M)]


def test_mbpoll_reads_weight_and_gate_inputs(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    standing(sim)
    eps = sim.endpoints["modbus"]
    port = str(eps["scale_tcp"]["port"])
    # 32-bit signed integers, big-endian word order, 0-based addresses: gross and net.
    gross, net = mbpoll(
        "-m",
        "tcp",
        "-p",
        port,
        "-a",
        "1",
        "-0",
        "-r",
        "0",
        "-c",
        "2",
        "-t",
        "4:int",
        "-B",
        "127.0.0.1",
    )
    assert abs(gross - TRUE_KG) <= MPE and net == gross
    (status,) = mbpoll(
        "-m", "tcp", "-p", port, "-a", "1", "-0", "-r", "4", "-c", "1", "-t", "4", "127.0.0.1"
    )
    assert status & 1
    gate = str(eps["gate_io_tcp"]["port"])
    inputs = mbpoll(
        "-m", "tcp", "-p", gate, "-a", "1", "-0", "-r", "0", "-c", "6", "-t", "1", "127.0.0.1"
    )
    assert inputs == [0, 0, 0, 0, 0, 1], "on the platform, clear of beams and loops, arm down"
    rtu = mbpoll(
        "-m",
        "rtu",
        "-b",
        "9600",
        "-P",
        "none",
        "-a",
        "1",
        "-0",
        "-r",
        "0",
        "-c",
        "1",
        "-t",
        "4:int",
        "-B",
        eps["scale_rtu"]["device"],
    )
    assert abs(rtu[0] - TRUE_KG) <= MPE
    # mbpoll as the gate PC: raise the barrier with a coil write; the truck then leaves.
    mbpoll("-m", "tcp", "-p", gate, "-a", "1", "-0", "-r", "0", "-t", "0", "127.0.0.1", "1")
    wait_for(lambda: sim.sim.site.visits[0].state == "gone", what="the truck to leave")
    assert mbpoll(
        "-m", "tcp", "-p", gate, "-a", "1", "-0", "-r", "4", "-c", "2", "-t", "1", "127.0.0.1"
    ) == [1, 0]
    coils = mbpoll(
        "-m", "tcp", "-p", gate, "-a", "1", "-0", "-r", "0", "-c", "2", "-t", "0", "127.0.0.1"
    )
    assert coils == [0, 0], "barrier coils are momentary"
    truth = [e.data for e in sim.sim.events if e.record == "truth"]
    assert truth and truth[0]["true_on_scale_kg"] == TRUE_KG and truth[0]["weighed"]


def test_stop_removes_links_and_closes_ports(running_sim: Callable[..., SimThread]) -> None:
    sim = running_sim()
    eps = sim.endpoints
    links = [Path(e["device"]) for e in eps["serial"].values()]
    links.append(Path(eps["modbus"]["scale_rtu"]["device"]))
    ports = [e["tcp"]["port"] for e in eps["serial"].values()]
    ports += [eps["modbus"]["scale_tcp"]["port"], eps["modbus"]["gate_io_tcp"]["port"]]
    endpoints_file = sim.sim.endpoints_out
    assert endpoints_file is not None and endpoints_file.exists()
    assert all(link.is_symlink() for link in links)
    sim.stop()
    assert not any(link.is_symlink() or link.exists() for link in links)
    assert not list(links[0].parent.glob("*")) and not links[0].parent.exists()
    assert not endpoints_file.exists()
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def test_camera_shows_the_plate_the_truck_carries(running_sim: Callable[..., SimThread]) -> None:
    swapped = STANDING_TRUCK + '[[truck.cheat]]\nkind = "plate_swap"\nshown_plate = "晋A00001"\n'
    sim = running_sim(swapped, camera=True)
    urls = sim.endpoints["camera"]
    assert urls is not None, "firmware_sim.camera.server is part of the tree"
    standing(sim)

    def label() -> dict | None:
        got = httpx.get(urls["label"], timeout=5).json()
        return got if got and got["plate"] == "晋A00001" else None

    wait_for(label, what="the camera to show the swapped plate")
    snapshot = httpx.get(urls["snapshot"], timeout=5)
    assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"
    truth_plate = sim.sim.site.visits[0].truck.plate
    assert truth_plate == "陕K12345"
