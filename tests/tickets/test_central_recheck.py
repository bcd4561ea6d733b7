"""The central re-checks tickets itself and counts honestly (issue 12, items 2 and 3), through
the real ingest path, real PostgreSQL and the real API:

- held → voided → released (same ticket, same truck): no ``ticket_reused``, quota consumed once
  by the released net;
- a gate claiming "ticket ok" for a wrong plate (or a ticket the central never issued, or an
  expired one, or a net far off the plan) raises ``ticket_mismatch`` centrally;
- a hand release after a hold is an ``override_release`` alarm the bureau filters by class, and
  counts in tonnage as released by hand; a voided weighing never counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from central.ingest.worker import Ingestor
from central.tickets.settings import TicketSettings
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.protocol import LedgerBatch, topic
from ledger.keys import SignerKey
from tests.central.sync_helpers import start_worker, unique, wait_until
from tests.support.broker import system_broker
from tests.support.pg import make_database
from tests.tickets.central_support import (
    ENT_A,
    Gate,
    alarms,
    auth,
    make_ingestor,
    make_token,
    ticket_app,
)

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
WITNESS = SignerKey("coalgate-central", bytes(range(50, 82)))
PLATE = "陕K8A3B2"
__all__ = ["system_broker"]  # the Mosquitto fixture, for the end-to-end test below


@dataclass
class World:
    url: str
    client: TestClient
    conn: psycopg.Connection[Any]
    ingestor: Ingestor
    tokens: dict[str, str]
    gates: list[Gate]

    def gate(self, n: int) -> Gate:
        return self.gates[n]


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url, drop = make_database()
    tmp = tmp_path_factory.mktemp("central_recheck")
    app = ticket_app(url, TicketSettings(root_key=ROOT, witness=WITNESS.verifier))
    try:
        with TestClient(app) as client, psycopg.connect(url, autocommit=True) as conn:
            # One gate per test, all of ENT_A, so tonnage and quota rows are per test.
            gates = [Gate(f"S6108210{i}", tmp, ENT_A) for i in range(1, 8)]
            for g in gates:
                g.enrol(conn)
            tokens = {r: make_token(url, r) for r in ("admin", "bureau")}
            tokens["a"] = make_token(url, "enterprise", ENT_A)
            r = client.post("/api/v1/tickets/issuer-keys", json={"enterprise": ENT_A},
                            headers=auth(tokens["bureau"]))
            assert r.status_code == 201, r.text
            with psycopg.connect(url) as ingest_conn:
                yield World(url, client, conn, make_ingestor(ingest_conn, WITNESS), tokens,
                            gates)
            for g in gates:
                g.close()
    finally:
        drop()


def issue(w: World, site: str, **fields: Any) -> dict[str, Any]:
    body = {"site": site, "plate": PLATE, "buyer": "鑫源兰炭", "destination": "保德县",
            "coal_type": "洗混煤", "planned_net_kg": 34000, **fields}
    r = w.client.post("/api/v1/tickets", json=body, headers=auth(w.tokens["a"]))
    assert r.status_code == 201, r.text
    return dict(r.json())


def weigh(g: Gate, txn: str, *, decision: str, net: int, ticket: str | None,
          plate: str = PLATE, reasons: tuple[str, ...] = ()) -> int:
    """A one-pass weighing as the gate writes it (edge_agent/gate/decision.py)."""
    tare = 15000
    return g.store.append("weighing", {
        "txn": txn, "pass": "one_pass", "plate": plate, "plate_conf_pm": 950,
        "plate_source": "anpr", "axles": 6, "weight_kg": tare + net, "gross_kg": tare + net,
        "tare_kg": tare, "net_kg": net, "tare_source": "stored", "tare_seq": None,
        "ticket_id": ticket, "limit_kg": 49000, "decision": decision,
        "reasons": list(reasons), "stable_ms": 3000, "snapshot_sha256": None,
    }).entry.seq


def override(g: Gate, txn: str | None, action: str, **extra: Any) -> int:
    body = {"txn": txn, "action": action, "operator": "张三", "role": "supervisor",
            "reason": "现场核实", **extra}
    return g.store.append("override", body).entry.seq


def txn(g: Gate, n: int) -> str:
    return f"{g.site}-{datetime.now(UTC):%Y%m%d}-{n}"


def consumed(w: World, site: str) -> list[tuple[int, str | None]]:
    return [(r[0], r[1]) for r in w.conn.execute(
        "SELECT net_kg, ticket_id FROM ticket_consumption WHERE site = %s ORDER BY seq",
        (site,)).fetchall()]


def uses(w: World, ticket_id: str) -> int:
    row = w.conn.execute("SELECT count(*) FROM ticket_uses WHERE ticket_id = %s",
                         (ticket_id,)).fetchone()
    assert row is not None
    return int(row[0])


def site_alarms(w: World, code: str, site: str) -> list[tuple[Any, ...]]:
    return [a for a in alarms(w.conn, code) if a[0] == site]


def tonnage(w: World, site: str) -> dict[str, int]:
    """The site's tonnage today, summed over coal types."""
    r = w.client.get("/api/v1/tonnage/daily", headers=auth(w.tokens["bureau"]))
    assert r.status_code == 200, r.text
    keys = ("net_kg", "trucks", "by_hand_net_kg", "by_hand_trucks")
    rows = [row for row in r.json()["rows"] if row["site"] == site]
    return {k: sum(row[k] for row in rows) for k in keys}


def test_held_voided_released_uses_the_ticket_once_by_the_released_net(w: World) -> None:
    g = w.gate(0)
    t = issue(w, g.site)
    # Held (40 t on a 34 t ticket: net off the plan), voided by the operator, weighed again.
    weigh(g, txn(g, 1), decision="hold", net=40000, ticket=t["ticket_id"],
          reasons=("net_mismatch",))
    override(g, txn(g, 1), "void")
    weigh(g, txn(g, 2), decision="release", net=34000, ticket=t["ticket_id"])
    g.push(w.ingestor)
    assert site_alarms(w, "ticket_reused", g.site) == []
    assert consumed(w, g.site) == [(34000, t["ticket_id"])]
    assert uses(w, t["ticket_id"]) == 1
    quota = w.client.get("/api/v1/tickets/quota", headers=auth(w.tokens["a"])).json()
    assert quota["mines"][0]["enterprise"] == ENT_A
    assert tonnage(w, g.site)["net_kg"] == 34000
    # The void is an override alarm too (info: the voided weighing had not been counted).
    voids = site_alarms(w, "override_void", g.site)
    assert [(v[2], v[3]["was_released"]) for v in voids] == [("info", False)]


def test_void_of_a_released_weighing_takes_it_back_out(w: World) -> None:
    g = w.gate(1)
    t = issue(w, g.site)
    weigh(g, txn(g, 1), decision="release", net=34000, ticket=t["ticket_id"])
    g.push(w.ingestor)
    assert consumed(w, g.site) == [(34000, t["ticket_id"])]
    override(g, txn(g, 1), "void")  # in a later batch than the weighing
    weigh(g, txn(g, 2), decision="release", net=33800, ticket=t["ticket_id"])
    g.push(w.ingestor)
    assert consumed(w, g.site) == [(33800, t["ticket_id"])]
    assert uses(w, t["ticket_id"]) == 1
    assert site_alarms(w, "ticket_reused", g.site) == []
    assert tonnage(w, g.site)["net_kg"] == 33800
    (void,) = site_alarms(w, "override_void", g.site)
    assert void[2] == "warning" and void[3]["was_released"] is True


def test_gate_saying_ticket_ok_for_a_wrong_plate_raises_ticket_mismatch(w: World) -> None:
    g = w.gate(2)
    t = issue(w, g.site)
    # The gate released with "ticket ok" although the plate is another truck's (written
    # with a separator, which the central normalises away for the right plate below).
    seq = weigh(g, txn(g, 1), decision="release", net=34000, ticket=t["ticket_id"],
                plate="陕K12345")
    t2 = issue(w, g.site, plate="陕K·7X215")
    ok = weigh(g, txn(g, 2), decision="release", net=34300, ticket=t2["ticket_id"],
               plate="陕K7X215")
    far = weigh(g, txn(g, 3), decision="release", net=20000, ticket=t2["ticket_id"],
                plate="陕K7X215")
    ghost = weigh(g, txn(g, 4), decision="release", net=30000, ticket="T-NEVER-ISSUED")
    g.push(w.ingestor)
    rows = {a[1]: a for a in site_alarms(w, "ticket_mismatch", g.site)}
    assert ok not in rows, rows[ok]
    assert rows[seq][2] == "critical" and rows[seq][3]["failed"] == ["plate"]
    assert rows[seq][3]["checks"]["plate"] == {"expected": PLATE, "found": "陕K12345"}
    assert rows[far][3]["failed"] == ["net"]
    assert rows[far][3]["checks"]["net"]["tolerance_kg"] == 1700  # 5 % of 34 t
    assert rows[ghost][3]["failed"] == ["exists"]


def test_expired_ticket_is_caught_centrally(w: World) -> None:
    g = w.gate(3)
    start = datetime.now(UTC) - timedelta(days=3)
    t = issue(w, g.site, valid_from=start.isoformat(),
              valid_to=(start + timedelta(hours=1)).isoformat())
    seq = weigh(g, txn(g, 1), decision="release", net=34000, ticket=t["ticket_id"])
    g.push(w.ingestor)
    (row,) = [a for a in site_alarms(w, "ticket_mismatch", g.site) if a[1] == seq]
    assert row[3]["failed"] == ["validity"]


def test_hand_release_after_a_hold_is_an_override_alarm_and_tonnage_by_hand(w: World) -> None:
    g = w.gate(4)
    g.config(ticket_required=True)
    t = issue(w, g.site)
    # Held for no ticket, then released by hand; a second truck released by the gate.
    held = weigh(g, txn(g, 1), decision="hold", net=30000, ticket=None, plate="陕K55555",
                 reasons=("no_ticket",))
    up = override(g, txn(g, 1), "manual_barrier_up")
    weigh(g, txn(g, 2), decision="release", net=34000, ticket=t["ticket_id"])
    # A barrier raised with nothing weighed (the attack of issue 12) and an open lane.
    lone = override(g, txn(g, 3), "manual_barrier_up")
    lane = override(g, None, "open_lane")
    g.push(w.ingestor)

    r = w.client.get("/api/v1/alarms", params={"category": "override", "site": g.site},
                     headers=auth(w.tokens["bureau"]))
    assert r.status_code == 200, r.text
    got = {a["seq"]: a for a in r.json()}
    assert set(got) == {up, lone, lane}
    assert all(a["code"].startswith("override_") for a in r.json())
    rel = got[up]
    assert (rel["code"], rel["severity"]) == ("override_release", "warning")
    assert rel["detail"]["hold_reasons"] == ["no_ticket"]
    assert rel["detail"]["operator"] == "张三" and rel["detail"]["released_by_hand"] is True
    assert (got[lone]["code"], got[lone]["severity"]) == ("override_release", "critical")
    assert got[lone]["detail"]["no_weighing"] is True
    assert (got[lane]["code"], got[lane]["severity"]) == ("override_open_lane", "critical")
    # Other classes are not in the filtered list; the no_ticket alarm is still there.
    assert [a[1] for a in site_alarms(w, "no_ticket", g.site)] == [held]
    bad = w.client.get("/api/v1/alarms", params={"category": "nonsense"},
                       headers=auth(w.tokens["bureau"]))
    assert bad.status_code == 422

    row = tonnage(w, g.site)
    assert (row["net_kg"], row["trucks"]) == (64000, 2)
    assert (row["by_hand_net_kg"], row["by_hand_trucks"]) == (30000, 1)
    assert sorted(consumed(w, g.site)) == [(30000, None), (34000, t["ticket_id"])]


def test_hand_release_of_a_held_ticketed_truck_uses_the_ticket_once(w: World) -> None:
    g = w.gate(5)
    t = issue(w, g.site)
    weigh(g, txn(g, 1), decision="hold", net=34100, ticket=t["ticket_id"],
          reasons=("tare_out_of_band",))
    g.push(w.ingestor)
    assert uses(w, t["ticket_id"]) == 0 and consumed(w, g.site) == []
    override(g, txn(g, 1), "manual_barrier_up")
    override(g, txn(g, 1), "manual_barrier_up")  # pressed twice: counted once
    g.push(w.ingestor)
    assert uses(w, t["ticket_id"]) == 1
    assert consumed(w, g.site) == [(34100, t["ticket_id"])]
    assert site_alarms(w, "ticket_reused", g.site) == []
    sev = [a[2] for a in site_alarms(w, "override_release", g.site)]
    assert sev == ["warning", "info"]
    assert tonnage(w, g.site)["by_hand_net_kg"] == 34100


def test_over_real_mosquitto_the_ingest_worker_counts_honestly_and_rechecks(
    w: World, system_broker: MqttSettings, tmp_path: Path,
) -> None:
    """The same facts as above, sent as a gate sends them (ledger batches over MQTT) to the real
    ingest worker: held → voided → released uses the ticket once by the released net, a "ticket
    ok" for a wrong plate is flagged, and a hand release is an override alarm and tonnage by
    hand."""
    g = w.gate(6)
    t = issue(w, g.site)
    weigh(g, txn(g, 1), decision="hold", net=41000, ticket=t["ticket_id"],
          reasons=("net_mismatch",))
    override(g, txn(g, 1), "void")
    released = weigh(g, txn(g, 2), decision="release", net=34200, ticket=t["ticket_id"])
    wrong = weigh(g, txn(g, 3), decision="release", net=34000, ticket=t["ticket_id"],
                  plate="陕K99999")  # the gate said "ok" (no reasons) for another truck
    weigh(g, txn(g, 4), decision="hold", net=29000, ticket=None, plate="陕K55555",
          reasons=("no_ticket",))
    up = override(g, txn(g, 4), "manual_barrier_up")
    worker = start_worker(w.url, system_broker, unique("recheck"), tmp_path)
    client = make_client(system_broker, unique("gate-pub"))
    client.connect(system_broker.host, system_broker.port)
    client.loop_start()
    try:
        entries = tuple(g.store.iter_entries(0))
        client.publish(topic(g.site, "ledger"), LedgerBatch(g.site, 0, entries).encode(),
                       qos=1).wait_for_publish(30)
        wait_until(lambda: bool(site_alarms(w, "override_release", g.site)), 60,
                   "the ingest worker to store the batch and raise the override alarm")
    finally:
        client.loop_stop()
        client.disconnect()
        worker.halt()
    # The wrong-plate use is a second use of the ticket: that is ticket_reused (one, for it),
    # not for the held-then-voided weighing.
    reused = site_alarms(w, "ticket_reused", g.site)
    assert [a[1] for a in reused] == [wrong]
    assert consumed(w, g.site)[0] == (34200, t["ticket_id"])
    mismatch = {a[1]: a[3]["failed"] for a in site_alarms(w, "ticket_mismatch", g.site)}
    assert mismatch.get(wrong) == ["plate"] and released not in mismatch
    (rel,) = site_alarms(w, "override_release", g.site)
    assert rel[1] == up and rel[2] == "warning"
    row = tonnage(w, g.site)
    assert (row["by_hand_net_kg"], row["by_hand_trucks"]) == (29000, 1)
    assert row["net_kg"] == 34200 + 34000 + 29000
