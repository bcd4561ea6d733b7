"""Run the real agent (`coalgate edge run`) against the real simulator (`coalgate sim run`).

The test plays only the ANPR camera: it tails the simulator's truth log and pushes each
arriving truck's *shown* plate to the agent's /device/anpr, as a camera on the entry loop would.
Everything else — serial ptys, TCP, Modbus gate IO, barrier — is the real thing.

Timing (issue 16): the simulator starts its scenario clock only once the agent is connected to
both its scale endpoint and the gate IO board (``--wait-for``), so a slow agent start-up on a
loaded machine changes nothing the agent sees. Every wait here is on an event (a file, a state,
a truth record); its timeout only guards against a hang and is generous, and its failure says
what was awaited.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from coalgate.sim_site import RegisteredVehicle, site_config_toml, timings_for_speed
from edge_agent.console.client import device_headers, ensure_accounts, login, write_push_secret

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# The console accounts of a simulated gate: name -> (role, password).
ACCOUNTS = {"测试员": ("operator", "sim-operator-pw"), "值班主管": ("supervisor", "sim-super-pw")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Generous hang guards for a loaded 2-core machine: they bound a hang, never a speed.
START_TIMEOUT_S = 120.0


def wait_for(pred: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class SimRun:
    scenario: str
    tmp: Path
    speed: float = 6.0
    scale_endpoint: str = "xk3190_pty"  # one of coalgate.sim_site.SCALE_ENDPOINTS
    policy: dict[str, Any] = field(default_factory=dict)
    sim: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    endpoints: dict[str, Any] = field(default_factory=dict)
    console: str = ""
    pushed: set[tuple[str, float]] = field(default_factory=set)
    # Also play a rear ANPR camera that reads the truck's own (rear) plate, as two-camera gates
    # have: a swapped front plate then disagrees with it.
    rear_camera: bool = False
    overridden: set[str] = field(default_factory=set)
    device_auth: dict[str, str] = field(default_factory=dict)  # the ANPR camera's secret
    clients: dict[str, httpx.Client] = field(default_factory=dict)  # logged-in, by account
    held_since: dict[str, float] = field(default_factory=dict)

    @property
    def scenario_path(self) -> Path:
        return ROOT / "config" / "scenarios" / f"{self.scenario}.toml"

    def start_sim(self) -> None:
        ep = self.tmp / "endpoints.json"
        self.sim = subprocess.Popen(
            [PY, "-m", "coalgate", "sim", "run", "--scenario", str(self.scenario_path),
             "--speed", str(self.speed), "--endpoints-out", str(ep),
             "--truth-out", str(self.tmp / "truth.jsonl"), "--dev-dir", str(self.tmp / "dev"),
             # The agent is stopped before the simulator, so no device vanishes under it.
             "--linger",
             # Trucks come only once the agent reads its scale and polls its gate IO board.
             "--wait-for", f"{self.scale_endpoint},gate_io_tcp"],
            cwd=ROOT, stdout=open(self.tmp / "sim.out", "wb"),
            stderr=open(self.tmp / "sim.err", "wb"),
        )
        wait_for(ep.exists, START_TIMEOUT_S, "the simulator's endpoints file")
        self.endpoints = json.loads(ep.read_text())

    def write_config(self, port: int) -> Path:
        from ledger.keys import SignerKey, write_signer_file

        key = self.tmp / "site.key"
        if not key.exists():
            write_signer_file(key, SignerKey.generate("sim-site"))
        scen = tomllib.loads(self.scenario_path.read_text(encoding="utf-8"))
        # Every truck is registered (车辆备案) with its axles and tare.
        vehicles = [RegisteredVehicle(t["plate"], t["axles"], t["tare_kg"])
                    for t in scen.get("truck", [])]
        cfg = self.tmp / "site.toml"
        cfg.write_text(site_config_toml(
            site_id="sim-site", name="模拟磅站", endpoints=self.endpoints,
            scale_endpoint=self.scale_endpoint,
            policy={"mode": "auto", **timings_for_speed(self.speed), **self.policy},
            vehicles=vehicles, console_port=port,
        ), encoding="utf-8")
        self.device_auth = device_headers(write_push_secret(self.tmp / "anpr.secret"))
        ensure_accounts(self.tmp / "accounts.sqlite", ACCOUNTS)
        return cfg

    def operator_client(self, name: str = "测试员") -> httpx.Client:
        """An httpx client logged in to the console as ``name`` (an account in ACCOUNTS)."""
        if name not in self.clients:
            self.clients[name] = login(httpx.Client(timeout=10), self.console, name,
                                       ACCOUNTS[name][1])
        return self.clients[name]

    def start_agent(self) -> None:
        self.clients.clear()  # sessions do not survive an agent restart
        port = free_port()
        cfg = self.write_config(port)
        self.agent = subprocess.Popen(
            [PY, "-m", "coalgate", "edge", "run", "--config", str(cfg)],
            cwd=ROOT, stdout=open(self.tmp / "agent.out", "ab"),
            stderr=open(self.tmp / "agent.log", "ab"),
        )
        self.console = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(self.console + "/api/state", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert self.agent is not None and self.agent.poll() is None, self.agent_log()
                return False

        wait_for(up, START_TIMEOUT_S, "the agent's console")

    def agent_log(self) -> str:
        p = self.tmp / "agent.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def truth(self) -> list[dict[str, Any]]:
        p = self.tmp / "truth.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line still being written
        return out

    def play_camera(self) -> None:
        """Push the plate of every truck that has arrived at the entry loop (once each)."""
        for rec in self.truth():
            if rec.get("event") == "arrived":
                key = (rec["plate"], rec["t"])
                if key in self.pushed:
                    continue
                self.pushed.add(key)
                httpx.post(self.console + "/device/anpr",
                           json={"plate": rec.get("shown_plate") or rec["plate"],
                                 "confidence": 0.95}, headers=self.device_auth, timeout=2)
                if self.rear_camera:
                    httpx.post(self.console + "/device/anpr",
                               json={"plate": rec["plate"], "confidence": 0.95,
                                     "camera": "rear"}, headers=self.device_auth, timeout=2)

    def play_operator(self) -> None:
        """A weighbridge operator who, once the alarm is recorded, lets a held truck go with a
        typed reason — except an overloaded one, which the gate refuses to release."""
        st = httpx.get(self.console + "/api/state", timeout=2).json()
        d = st.get("decision") or {}
        if st["state"] != "held" or st["txn"] in self.overridden:
            return
        # Like a person, only for a truck that stands on the scale and after a look: a truck
        # driving straight through (an escape) is not waved out before it forces the barrier.
        first_seen = self.held_since.setdefault(st["txn"], time.monotonic())
        # Three seconds: a cheat still under way (a jammer switched on a moment after the truck
        # stopped) shows itself before the truck is waved out; a hand-released truck is no
        # longer watched for weight jumps.
        if not st.get("stable") or time.monotonic() - first_seen < 3.0:
            return
        if d.get("txn") == st["txn"] and "overload" in d.get("reasons", []):
            return
        if not st.get("weighed"):
            return  # only a weighed, held truck may be released by hand (issue 12)
        self.overridden.add(st["txn"])
        r = self.operator_client().post(self.console + "/api/override", json={
            "action": "manual_barrier_up", "reason": "核实后放行（测试）"}, timeout=2)
        assert r.status_code == 200, r.text

    def run_until(self, done: Any, timeout: float, operator: bool = False,
                  what: str = "") -> None:
        """Play camera (and operator) until ``done()``; a timeout (a hang guard) fails the test
        naming ``what`` was awaited, with the simulator's last events and the agent's log."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.play_camera()
            if operator:
                self.play_operator()
            assert self.agent is not None
            if self.agent.poll() is not None:
                raise AssertionError("agent exited:\n" + self.agent_log())
            if done():
                return
            time.sleep(0.05)
        awaited = what or getattr(done, "__name__", "a condition")
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {awaited}"
            f"\n-- last simulator events:\n{self.truth_tail()}\n-- agent log:\n{self.agent_log()}")

    def truth_tail(self, n: int = 12) -> str:
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in self.truth()[-n:])

    def sim_started(self) -> bool:
        return any(r.get("event") == "start" for r in self.truth())

    def sim_ended(self) -> bool:
        return any(r.get("record") == "end" for r in self.truth())

    def stop_agent(self, sig: int = signal.SIGTERM) -> int:
        assert self.agent is not None
        self.agent.send_signal(sig)
        return self.agent.wait(timeout=20)

    def stop(self) -> None:
        for p in (self.agent, self.sim):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def entries(self) -> list[tuple[int, str, dict[str, Any]]]:
        from ledger.store import LedgerStore

        with LedgerStore.open(self.tmp / "ledger.sqlite", site="sim-site") as st:
            return [(se.entry.seq, se.entry.kind, se.entry.body) for se in st.iter_entries()]


def mpe_kg(true_kg: int, e: int = 20) -> int:
    """OIML R76 class III maximum permissible error in service (DESIGN.md §5)."""
    n = abs(true_kg) / e
    return e * (1 if n <= 500 else 2 if n <= 2000 else 3)


def env_flag() -> bool:
    return os.environ.get("COALGATE_KEEP_TMP") == "1"
