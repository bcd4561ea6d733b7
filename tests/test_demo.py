"""`coalgate demo` end to end: the real commands, the real broker, the embedded PostgreSQL.

The demo runs as a subprocess until enough has happened (every site weighed trucks, cheats were
completed), then is stopped with Ctrl-C — an event, not a fixed duration, so a loaded machine
only makes it take longer. While it runs, the API answers with the tokens it printed; afterwards
nothing it started is left, and the central database (started again here from the demo's data
directory) holds every gate's ledger exactly once, verifying, with alarms for the scripted
cheats and none for honest trucks.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from central.db import DatabaseSettings, resolve_url, stop_embedded
from central.ingest import store as db_store
from central.settings import settings_from_mapping
from coalgate.demo_plan import (
    SCALE_KINDS,
    SitePlan,
    central_config_toml,
    registered_vehicles,
    scenario_toml,
    shown_plates,
    site_config_toml,
    site_plans,
)
from edge_agent.config import parse_config
from firmware_sim.scenario import parse_scenario
from ledger.entry import ZERO_HASH, Entry
from ledger.keys import VerifierKey
from ledger.merkle import root_at
from ledger.store import LedgerStore

ROOT = Path(__file__).resolve().parents[1]
# Alarms that mean the system itself misbehaved, whatever the trucks did.
SYSTEM_FAULTS = {"tamper_fork", "tamper_signature", "tamper_topic", "tamper_checkpoint",
                 "projection_failed", "clock_skew", "site_offline"}


# -- the plan (pure) -------------------------------------------------------------------------


def _fake_endpoints(tmp: Path) -> dict[str, Any]:
    tcp = {"host": "127.0.0.1", "port": 40001}
    return {
        "serial": {"xk3190": {"device": str(tmp / "ttyXK3190"), "tcp": tcp},
                   "toledo": {"device": str(tmp / "ttyTOLEDO"), "tcp": tcp, "checksum": True}},
        "modbus": {"scale_tcp": {"host": "127.0.0.1", "port": 40005, "unit_id": 1},
                   "gate_io_tcp": {"host": "127.0.0.1", "port": 40006, "unit_id": 1}},
        "camera": {"snapshot": "http://127.0.0.1:40007/snapshot.jpg"},
    }


def test_three_sites_three_indicators_honest_trucks_and_cheats() -> None:
    plans = site_plans(3)
    assert [p.scale_kind for p in plans] == list(SCALE_KINDS)
    assert len({p.site_id for p in plans}) == 3
    plates = [plate for p in plans for plate, _ in registered_vehicles(p)]
    assert len(plates) == len(set(plates)), "a plate must name one truck at one site"
    for p in plans:
        assert any(t.honest for t in p.trucks) and any(not t.honest for t in p.trucks)
    codes = {c for p in plans for t in p.trucks if t.cheat for c in t.cheat.expect}
    assert {"escape", "overload", "plate_mismatch", "tare_out_of_band"} <= codes


def test_more_sites_repeat_the_mix_with_their_own_ids_and_plates() -> None:
    plans = site_plans(7)
    assert len({p.site_id for p in plans}) == 7
    plates = [plate for p in plans for t in p.trucks for plate in shown_plates(t)]
    assert len(plates) == len(set(plates))
    with pytest.raises(ValueError, match="at least one site"):
        site_plans(0)


def test_generated_files_are_valid_for_the_production_commands(tmp_path: Path) -> None:
    for plan in site_plans(3):
        scenario = parse_scenario(scenario_toml(plan, seed=1), f"{plan.site_id}.toml")
        assert [t.plate for t in scenario.truck] == [t.plate for t in plan.trucks]
        assert sum(len(t.cheat) for t in scenario.truck) == sum(
            len(t.cheat.tables) for t in plan.trucks if t.cheat)
        cfg = parse_config(tomllib.loads(site_config_toml(
            plan, _fake_endpoints(tmp_path), console_port=8123, mqtt_host="127.0.0.1",
            mqtt_port=1883, speed=4.0, mqtt_password_file="/x/mqtt.password")), "site.toml")
        assert cfg.site.id == plan.site_id and cfg.policy.ticket_required
        assert {v.plate for v in cfg.vehicles} == {p for p, _ in registered_vehicles(plan)}
        assert cfg.mqtt is not None and cfg.mqtt.port == 1883
        assert cfg.mqtt.protocol == "3.1.1"  # amqtt; written, not taken from an env var
        assert cfg.mqtt.username == plan.site_id  # the broker login is the site id
        assert cfg.mqtt.password_file == "/x/mqtt.password"
        # The camera and the scanner push with their own secrets; the console has accounts.
        assert cfg.camera.push_secret_file == "anpr.secret"
        assert cfg.scanner.push_secret_file == "scanner.secret"
        assert cfg.console.accounts == "accounts.sqlite" and cfg.console.host == "127.0.0.1"
    central = tomllib.loads(central_config_toml(
        database_url="postgresql://x@/coalgate?host=/tmp", data_dir=str(tmp_path),
        mqtt_host="127.0.0.1", mqtt_port=1884, api_port=8124, mqtt_password="p\"w"))
    settings = settings_from_mapping(central, base=tmp_path, env={})
    assert settings.ingest.mqtt.protocol == "3.1.1"
    assert (settings.ingest.mqtt.username, settings.ingest.mqtt.password) == ("central", 'p"w')
    assert not settings.ingest.mqtt.shared_subscriptions
    assert settings.api.port == 8124


# -- the whole system ------------------------------------------------------------------------


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _assert_nothing_left(data_dir: Path, ports: list[int]) -> None:
    assert _processes_mentioning(str(data_dir)) == []
    assert not (data_dir / "central" / "pgdata" / "postmaster.pid").exists()
    assert not any((data_dir / "sites").glob("*/dev")), "pty links left behind"
    assert [p for p in ports if _listening(p)] == []


@pytest.fixture
def central_db(tmp_path: Path) -> Iterator[Any]:
    """After the demo: its embedded PostgreSQL started again, for inspection, then stopped."""
    started: list[Path] = []

    def open_db(data_dir: Path) -> str:
        started.append(data_dir / "central")
        return resolve_url(DatabaseSettings(url=None, data_dir=data_dir / "central"))

    yield open_db
    for d in started:
        stop_embedded(d)


def _audit_site(cur: psycopg.Cursor[Any], site: str, ledger: Path, verifier: VerifierKey) -> int:
    """The site's ledger is stored centrally exactly once, in order, verifying, same root."""
    with LedgerStore.open(ledger, site=site) as st:
        size = st.size
        want = [se.hash for se in st.iter_entries(0, size)]
        want_root = st.root(size)
    rows = cur.execute("SELECT seq, leaf, hash, sig FROM entries WHERE site = %s ORDER BY seq",
                       (site,)).fetchall()
    assert [r[0] for r in rows] == list(range(size)), f"{site}: gaps, duplicates or missing"
    prev = ZERO_HASH
    for seq, leaf, h, sig in rows:
        entry = Entry.from_leaf(bytes(leaf))
        assert entry.seq == seq and entry.prev == prev, f"{site}: chain broken at {seq}"
        assert verifier.verify(bytes(leaf), bytes(sig)), f"{site}: bad signature at {seq}"
        prev = bytes(h)
    assert [bytes(r[2]) for r in rows] == want
    assert root_at(size, db_store.DbNodes(cur, site)) == want_root
    return size


def _truths(site_dir: Path) -> list[dict[str, Any]]:
    lines = (site_dir / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _cheats_done(plan: SitePlan, truths: list[dict[str, Any]], speed: float) -> list[str]:
    """Plates whose cheat pass ended well (8 real seconds) before the last thing that happened:
    by then the gate has recorded its alarm."""
    last_t = max((r["t"] for r in truths), default=0.0)
    done = []
    for truck in plan.trucks:
        if truck.cheat is None:
            continue
        cheat_pass = str(truck.cheat.tables[0].get("pass",
                         "tare" if truck.cheat.tables[0]["kind"] == "water_tank" else "gross"))
        if any(r.get("record") == "truth" and r["plate"] == truck.plate
               and r["pass"] == cheat_pass and r["t"] < last_t - 8 * speed for r in truths):
            done.append(truck.plate)
    return done


def _check_alarms(cur: psycopg.Cursor[Any], plan: SitePlan, truths: list[dict[str, Any]],
                  speed: float) -> list[str]:
    """Alarms for every scripted cheat that happened, none for an honest truck."""
    txn_plates = {txn: plate for txn, plate in cur.execute(
        "SELECT body->>'txn', body->>'plate' FROM entries"
        " WHERE site = %s AND kind = 'weighing'", (plan.site_id,)).fetchall()}
    alarms = cur.execute("SELECT code, txn, detail FROM alarms WHERE site = %s",
                         (plan.site_id,)).fetchall()
    listing = "\n".join(f"  {c} txn={t} plate={txn_plates.get(t)} {d}" for c, t, d in alarms)
    faults = [c for c, _, _ in alarms if c in SYSTEM_FAULTS]
    assert faults == [], f"{plan.site_id}: system faults:\n{listing}"
    honest = {t.plate for t in plan.trucks if t.honest}
    for code, txn, detail in alarms:
        plate = txn_plates.get(txn) or detail.get("plate")
        assert plate not in honest, f"{plan.site_id}: alarm {code} for honest {plate}:\n{listing}"
    # A cheat pass that ended well before the stop must have been seen by the central.
    seen = []
    done = _cheats_done(plan, truths, speed)
    for truck in plan.trucks:
        if truck.cheat is None or truck.plate not in done:
            continue
        hits = [c for c, txn, d in alarms if c in truck.cheat.expect
                and (txn_plates.get(txn) in shown_plates(truck) or txn not in txn_plates)]
        assert hits, (f"{plan.site_id}: no {truck.cheat.expect} alarm for {truck.plate} "
                      f"({truck.cheat.label}):\n{listing}")
        seen.append(truck.plate)
    return seen


def _stop_demo(proc: subprocess.Popen[bytes]) -> None:
    """On a failed test, stop the demo the way a person would (Ctrl-C), so it cleans up."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_demo_runs_the_whole_system_and_leaves_nothing(tmp_path: Path, central_db: Any) -> None:
    data = tmp_path / "demo"
    speed = 4.0
    out_path = tmp_path / "demo.out"  # a file, not a pipe: nothing to drain while it runs
    plans = site_plans(3)
    with out_path.open("wb") as out_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coalgate", "demo", "--data-dir", str(data),
             "--speed", str(speed)],
            cwd=ROOT, stdout=out_file, stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return out_path.read_text(encoding="utf-8", errors="replace")

    def until(pred: Any, timeout: float, what: str) -> None:
        """Wait on an event; the timeout only guards against a hang (a loaded machine)."""
        deadline = time.monotonic() + timeout
        while not pred():
            assert proc.poll() is None, f"the demo exited while waiting for {what}:\n" + (
                output()[-3000:])
            assert time.monotonic() < deadline, (
                f"timed out after {timeout:.0f} s waiting for {what}:\n" + output()[-3000:])
            time.sleep(0.5)

    info: dict[str, Any] = {}
    try:
        until((data / "demo.json").exists, 240, "the demo to be ready (demo.json)")
        info = json.loads((data / "demo.json").read_text(encoding="utf-8"))
        api = info["api"]
        bureau = {"Authorization": f"Bearer {info['tokens']['bureau']}"}
        enterprise = {"Authorization": f"Bearer {info['tokens']['enterprise']}"}
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{api}/sites").status_code == 401
            sites = http.get(f"{api}/sites", headers=bureau).json()
            assert {s["id"] for s in sites} == {p.site_id for p in plans}
            own = http.get(f"{api}/sites", headers=enterprise).json()
            assert {s["id"] for s in own} == {p.site_id for p in plans
                                              if p.enterprise == plans[0].enterprise}
            for site in info["sites"].values():
                assert http.get(site["console"] + "api/state").json()["site"] in info["sites"]
            # Alarms reach the API while the demo runs (an escape comes early at site 1).
            until(lambda: bool(http.get(f"{api}/alarms", headers=bureau).json()), 300,
                  "a first alarm on the API")
            # The ingest worker dies mid-run: the demo restarts it, the gates resend, nothing
            # is lost.
            ingest = [p for p in _processes_mentioning(str(data / "central" / "central.toml"))
                      if " ingest " in p]
            assert len(ingest) == 1, ingest
            os.kill(int(ingest[0].split(":")[0]), signal.SIGKILL)

            def enough() -> bool:
                """Every site has two weighings at the central, and three cheats are done."""
                for plan in plans:
                    page = http.get(f"{api}/weighings", params={"site": plan.site_id},
                                    headers=bureau)
                    if page.status_code != 200 or len(page.json()["items"]) < 2:
                        return False
                try:
                    done = sum(len(_cheats_done(plan, _truths(data / "sites" / plan.site_id),
                                                speed)) for plan in plans)
                except (OSError, json.JSONDecodeError):
                    return False  # a truth line still being written: look again
                return done >= 3

            until(enough, 600, "two weighings per site at the central and three cheats done")
        proc.send_signal(signal.SIGINT)  # stop as a person would, with Ctrl-C
        proc.wait(timeout=180)
    finally:
        _stop_demo(proc)
    text = output()
    assert proc.returncode == 0, text[-3000:]
    assert "dashboard" in text and info["tokens"]["bureau"] in text
    assert "central ingest 退出 exited (status -9); restarting" in text, text[-3000:]
    for site in info["sites"].values():
        assert site["console"] in text
        # The demo prints each gate's console logins: an operator and a supervisor.
        assert {x["role"] for x in site["logins"].values()} == {"operator", "supervisor"}
        assert all(x["password"] in text for x in site["logins"].values())
    ports = [int(info["api"].split(":")[2].split("/")[0]), int(info["mqtt"].rsplit(":", 1)[1])]
    _assert_nothing_left(data, ports)

    url = central_db(data)
    cheats_seen = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for plan in site_plans(3):
            key = cur.execute("SELECT verifier_key FROM sites WHERE id = %s",
                              (plan.site_id,)).fetchone()
            assert key is not None
            site_dir = data / "sites" / plan.site_id
            size = _audit_site(cur, plan.site_id, site_dir / "ledger.sqlite",
                               VerifierKey.from_text(key[0]))
            weighings = cur.execute(
                "SELECT count(*) FROM entries WHERE site = %s AND kind = 'weighing'",
                (plan.site_id,)).fetchone()
            assert size > 0 and weighings is not None and weighings[0] >= 2, plan.site_id
            cheats_seen += _check_alarms(cur, plan, _truths(site_dir), speed)
        # The e-tickets were issued by the central and their use reconciled from the ledgers.
        issued: dict[str, int] = dict(
            cur.execute("SELECT site, count(*) FROM tickets GROUP BY site").fetchall())
        assert set(issued) == {p.site_id for p in site_plans(3)}, issued
        used = cur.execute("SELECT count(*) FROM ticket_uses").fetchone()
        assert used is not None and used[0] >= 3
    assert len(cheats_seen) >= 3, f"too few scripted cheats completed: {cheats_seen}"


def test_scripts_demo_smoke(tmp_path: Path) -> None:
    data = tmp_path / "smoke"
    # The timeout is a hang guard: 30 s of demo plus start-up and shutdown on a loaded machine.
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--duration", "30", "--data-dir", str(data)],
        cwd=ROOT, capture_output=True, timeout=600,
    )
    text = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, text[-3000:]
    assert "/dashboard/" in text and "cgt_" in text and "Ctrl-C" not in text
    assert text.count("http://127.0.0.1:") >= 5  # dashboard, API, OpenAPI, three consoles
    _assert_nothing_left(data, [])
