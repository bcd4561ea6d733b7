"""Gate liveness truth end to end (issue 12, item 8): a real gate controller holds a truck,
its situation rides the outbox's retained status heartbeat through the system Mosquitto, the
real ingest worker stores it in PostgreSQL, the API's own sweeper raises ``gate_stalled`` and
the sites API shows the stalled minutes instead of a plain 在线 — and once the gate moves
again the next heartbeat resolves the alarm.

No real minutes pass: the gate's simulated clock starts twenty minutes in the past (the truck
has "waited" that long), and the threshold is the central's ``rules.gate_stalled_after_s``
setting, injected like every other setting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from central.alarms import sweep_offline
from central.api import create_app
from edge_agent.gate import Operator
from edge_agent.runtime import gate_situation_of
from edge_agent.sync.mqtt import MqttSettings
from edge_agent.sync.outbox import Outbox
from tests.central.api_support import api_settings, auth, token
from tests.central.sync_helpers import (
    clear_retained,
    make_gate,
    start_worker,
    unique,
    wait_until,
)
from tests.edge.gate_harness import Gate as GateSim
from tests.support.api_server import Server

PLATE = "陕K7X215"
WAITED = timedelta(minutes=20)
STALLED_AFTER_S = 300  # 5 minutes, instead of the default 10: a setting, not a sleep


class Situation:
    """What the gate loop hands the outbox thread (as edge_agent.runtime does): one dict,
    swapped whole after every step, never mutated in place."""

    def __init__(self, sim: GateSim) -> None:
        self.sim = sim
        self.lock = threading.Lock()
        self.value = gate_situation_of(sim.ctrl.gate_status())

    def refresh(self) -> dict[str, Any]:
        with self.lock:
            self.value = gate_situation_of(self.sim.ctrl.gate_status())
        return self.value

    def __call__(self) -> dict[str, Any]:
        return self.value


def held_truck(start: datetime) -> GateSim:
    """A two-pass, ticket-required gate whose loaded truck, without a ticket, is weighed and
    held; its simulated clock starts at ``start``."""
    sim = GateSim(ticket_required=True, identify_timeout_ms=3000,
                  start_ms=int(start.timestamp() * 1000))
    sim.drive_on(15000, PLATE)
    sim.hold(15000, 3000)
    sim.drive_off(15000)  # the tare pass is released: no ticket needed yet
    sim.hold(0, 1000)
    sim.drive_on(49000, PLATE)
    sim.hold(49000, 8000)
    assert sim.ctrl.state == "held" and sim.bodies("weighing")[-1]["reasons"] == ["no_ticket"]
    return sim


def stored_gate(url: str, site: str) -> dict[str, Any] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT last_status FROM site_state WHERE site = %s",
                           (site,)).fetchone()
    status = row[0] if row else None
    return status.get("gate") if isinstance(status, dict) else None


def stalled_alarms(url: str, site: str) -> list[tuple[str, dict[str, Any], str | None]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT state, detail, note FROM alarms WHERE site = %s AND code = 'gate_stalled'"
            " ORDER BY id", (site,)).fetchall()]


def test_stalled_gate_is_alarmed_shown_and_resolved_when_it_moves(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    gate = make_gate(pg_url, tmp_path)
    arrived = datetime.now(UTC) - WAITED
    sim = held_truck(arrived)
    situation = Situation(sim)
    waiting_since = situation.value["waiting_since"]
    assert situation.value["state"] == "held" and waiting_since is not None
    waited_from = datetime.fromisoformat(waiting_since.replace("Z", "+00:00"))

    settings = api_settings(rules__gate_stalled_after_s=str(STALLED_AFTER_S),
                            api__offline_sweep_s="0.5")
    assert settings.rules.gate_stalled_after_s == STALLED_AFTER_S
    worker = start_worker(pg_url, system_broker, unique("grp"), tmp_path)
    store = gate.open()
    box = Outbox(store, gate.site, system_broker, signer=gate.key, poll_interval=0.05,
                 client_id=unique("edge"), gate_status=situation)
    try:
        with Server(create_app(settings, url=pg_url)) as server:
            admin = token(pg_url, "admin")

            def site_status() -> dict[str, Any]:
                r = httpx.get(f"{server.base}/api/v1/sites/{gate.site}/status",
                              headers=auth(admin), timeout=10)
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body

            box.start()
            wait_until(lambda: (stored_gate(pg_url, gate.site) or {}).get("state") == "held",
                       20, "the held gate's heartbeat stored in site_state")
            assert stored_gate(pg_url, gate.site) == situation.value

            # The pure threshold with an injected clock: four minutes into the wait the same
            # sweep says nothing (the API's own sweeper is the one that raises it below).
            with psycopg.connect(pg_url) as conn:
                early = sweep_offline(conn, waited_from + timedelta(minutes=4),
                                      settings.rules)
            assert early == 0 and stalled_alarms(pg_url, gate.site) == []

            wait_until(lambda: len(stalled_alarms(pg_url, gate.site)) == 1, 20,
                       "the API's sweeper to raise gate_stalled")
            [(state, detail, _)] = stalled_alarms(pg_url, gate.site)
            assert state == "open"
            assert detail["gate_state"] == "held" and detail["waiting_since"] == waiting_since
            assert detail["source"] == "central" and 19 <= detail["minutes"] <= 21

            before = datetime.now(UTC)
            st = site_status()
            after = datetime.now(UTC)
            assert st["online"] is True and st["gate_state"] == "held"
            assert (before - waited_from) // timedelta(minutes=1) <= st["stalled_min"] \
                <= (after - waited_from) // timedelta(minutes=1)
            sites = httpx.get(f"{server.base}/api/v1/sites", headers=auth(admin), timeout=10)
            assert [s["status"]["stalled_min"] for s in sites.json()
                    if s["id"] == gate.site] == [st["stalled_min"]]

            # Sweeping again raises nothing new: one wait, one alarm.
            with psycopg.connect(pg_url) as conn:
                assert sweep_offline(conn, datetime.now(UTC), settings.rules) == 0
            assert len(stalled_alarms(pg_url, gate.site)) == 1

            # The gate moves again: a supervisor releases the held, weighed truck, it drives
            # off, the gate is idle — and says so in its next heartbeat (sent on change).
            sim.now = int(time.time() * 1000)
            sim.send(Operator("manual_barrier_up", "王五", "票据系统故障，电话核实",
                              role="supervisor"))
            sim.drive_off(49000)
            assert sim.ctrl.state == "idle"
            assert situation.refresh()["waiting_since"] is None
            wait_until(lambda: (stored_gate(pg_url, gate.site) or {}).get("state") == "idle",
                       20, "the idle gate's heartbeat stored in site_state")
            wait_until(lambda: stalled_alarms(pg_url, gate.site)[0][0] == "resolved", 20,
                       "the sweeper to resolve gate_stalled")
            assert stalled_alarms(pg_url, gate.site)[0][2] == "gate weighing again"
            st = site_status()
            assert st["online"] is True and st["gate_state"] == "idle"
            assert st["stalled_min"] is None
    finally:
        box.stop()
        worker.halt()
        store.close()
        clear_retained(system_broker, [gate.site])
