"""Gates vs loading sites (sites.loading_site): enrolment, issuance, reconciliation and
distribution to every gate of a mine, each on its own topic under the per-gate broker ACL.

Real PostgreSQL (throwaway databases), the real ingest handler, the real API app and CLI, and a
private Mosquitto with the shipped config/mosquitto/ accounts.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from central.broker_accounts import gate_client_id
from central.cli import app as central_cli
from central.tickets import issuers, service
from central.tickets.distribution import TicketPublisher
from central.tickets.errors import SiteNotAllowedError
from central.tickets.settings import TicketSettings
from central.tickets.sites import check_loading_site, gates_of
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.protocol import topic
from ledger.keys import SignerKey
from tests.support.broker import Mosquitto, shipped_accounts
from tests.tickets.central_support import (
    ENT_A,
    ENT_B,
    Gate,
    alarms,
    auth,
    make_ingestor,
    make_token,
    ticket_app,
)

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
MINE = "S61082101"  # the mine: gate 1's id, and the loading site of gates 1 and 2
GATE2 = "S61082101-2"
OTHER = "S61082109"  # another weighbridge of ENT_A, enrolled as its own loading site
PLATE = "陕K8A3B2"


def _issue(conn: psycopg.Connection[Any], site: str = MINE, enterprise: str = ENT_A,
           plate: str = PLATE) -> service.TicketRecord:
    req = service.IssueRequest(enterprise=enterprise, site=site, plate=plate, buyer="鑫源兰炭",
                               destination="保德县", coal_type="洗混煤", planned_net_kg=34500)
    return service.issue(conn, req, who="sales", now=datetime.now(UTC))


def _pending(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str | None]]:
    return [(r[0], r[1]["type"], r[1].get("ticket_id")) for r in conn.execute(
        "SELECT site, payload FROM ticket_outbox WHERE published_at IS NULL ORDER BY id"
    ).fetchall()]


# -- enrolment -------------------------------------------------------------------------------

def test_cli_enrol_sets_the_loading_site_and_refuses_another_enterprises(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COALGATE_CENTRAL__DATABASE__URL", pg_url)
    runner = CliRunner()
    keys = {}
    for site in (MINE, GATE2, "S61082201"):
        keys[site] = tmp_path / f"{site}.pub"
        keys[site].write_text(SignerKey.generate(site).verifier.to_text() + "\n")
    first = runner.invoke(central_cli, ["site", "enroll", MINE, "--key", str(keys[MINE]),
                                        "--enterprise", ENT_A])
    assert first.exit_code == 0, first.output
    second = runner.invoke(central_cli, ["site", "enroll", GATE2, "--key", str(keys[GATE2]),
                                         "--enterprise", ENT_A, "--loading-site", MINE])
    assert second.exit_code == 0, second.output
    assert f"loading site {MINE}" in second.output
    foreign = runner.invoke(central_cli, ["site", "enroll", "S61082201", "--key",
                                          str(keys["S61082201"]), "--enterprise", ENT_B,
                                          "--loading-site", MINE])
    assert foreign.exit_code == 2
    assert "--loading-site" in foreign.output and ENT_A in foreign.output
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, loading_site FROM sites ORDER BY id").fetchall()
        assert rows == [(MINE, MINE), (GATE2, MINE)]
        assert gates_of(conn, MINE) == [MINE, GATE2]


def test_api_enrol_defaults_the_loading_site_to_the_id_and_answers_403_for_a_foreign_one(
    pg_url: str, tmp_path: Path
) -> None:
    app = ticket_app(pg_url, TicketSettings(root_key=ROOT))
    admin = auth(make_token(pg_url, "admin"))

    def body(site: str, enterprise: str, **extra: str) -> dict[str, Any]:
        return {"id": site, "enterprise": enterprise, "name": site,
                "verifier_key": SignerKey.generate(site).verifier.to_text(), **extra}

    with TestClient(app) as client:
        r = client.post("/api/v1/sites", json=body(MINE, ENT_A), headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["loading_site"] == MINE
        r = client.post("/api/v1/sites", json=body(GATE2, ENT_A, loading_site=MINE),
                        headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["loading_site"] == MINE
        r = client.post("/api/v1/sites", json=body("S61082201", ENT_B, loading_site=MINE),
                        headers=admin)
        assert r.status_code == 403, r.text
        assert ENT_A in r.json()["detail"]
        r = client.post("/api/v1/sites", json=body("S61082202", ENT_B, loading_site="bad id"),
                        headers=admin)
        assert r.status_code == 422, r.text
        listed = {s["id"]: s["loading_site"]
                  for s in client.get("/api/v1/sites", headers=admin).json()}
        assert listed == {MINE: MINE, GATE2: MINE}


# -- issuance --------------------------------------------------------------------------------

def test_a_ticket_may_name_a_mine_that_is_no_gates_id(pg_url: str, tmp_path: Path) -> None:
    """Gates yl-03-east and yl-03-west serve the mine yl-03: tickets name the mine, and go to
    both gates; another enterprise cannot issue for it."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        east, west = Gate("yl-03-east", tmp_path, ENT_A), Gate("yl-03-west", tmp_path, ENT_A)
        b = Gate("yl-09", tmp_path, ENT_B)
        east.enrol(conn, loading_site="yl-03")
        west.enrol(conn, loading_site="yl-03")
        b.enrol(conn)
        with pytest.raises(SiteNotAllowedError, match="belongs to enterprise"):
            check_loading_site(conn, site="yl-09b", enterprise=ENT_B, loading_site="yl-03")
        for ent in (ENT_A, ENT_B):
            issuers.create_issuer_key(conn, ent, ROOT, now=datetime.now(UTC))
        conn.execute("UPDATE ticket_outbox SET published_at = now()")
        ticket = _issue(conn, site="yl-03")
        assert _pending(conn) == [("yl-03-east", "issued", None), ("yl-03-west", "issued", None)]
        with pytest.raises(SiteNotAllowedError, match="not a loading site of enterprise"):
            _issue(conn, site="yl-03", enterprise=ENT_B)
        with pytest.raises(SiteNotAllowedError):
            _issue(conn, site="yl-03-east")  # a gate id that is not a loading site
        service.void(conn, ticket.id, reason="订单取消", who="sales", now=datetime.now(UTC))
        assert _pending(conn)[2:] == [("yl-03-east", "revoked", ticket.id),
                                      ("yl-03-west", "revoked", ticket.id)]
        for g in (east, west, b):
            g.close()


# -- reconciliation --------------------------------------------------------------------------

def test_reconciliation_honest_at_either_gate_of_the_mine_wrong_site_elsewhere(
    pg_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn, psycopg.connect(pg_url) as ing:
        g1, g2, other = (Gate(MINE, tmp_path, ENT_A), Gate(GATE2, tmp_path, ENT_A),
                         Gate(OTHER, tmp_path, ENT_A))
        g1.enrol(conn)
        g2.enrol(conn, loading_site=MINE)
        other.enrol(conn)
        issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC))
        ingestor = make_ingestor(ing)
        t1, t2, t3, shared = (_issue(conn) for _ in range(4))
        conn.execute("UPDATE ticket_outbox SET published_at = now()")
        for g in (g1, g2, other):
            g.config(ticket_required=True)
        s2 = g2.load(PLATE, t1.id)  # honest, at the mine's second weighbridge
        g1.load(PLATE, t2.id)  # honest, at the mine's first
        s_other = other.load(PLATE, t3.id)  # another loading site: wrong site
        g1.load(PLATE, shared.id)
        s_shared = g2.load(PLATE, shared.id)  # the same ticket at both gates of the mine
        for g in (g1, g2, other):
            g.push(ingestor)
            g.resend_all(ingestor)  # idempotent: nothing new
        invalid = alarms(conn, "invalid_ticket")
        assert [(r[0], r[1], r[3]["result"], r[3]["ticket_id"]) for r in invalid] == \
            [(OTHER, s_other, "wrong_site", t3.id)]
        assert invalid[0][3]["gate_loading_site"] == OTHER
        reused = alarms(conn, "ticket_reused")
        assert len(reused) == 1 and reused[0][3]["ticket_id"] == shared.id
        assert (reused[0][0], reused[0][1]) == (GATE2, s_shared)
        assert alarms(conn, "no_ticket") == []
        # Each use goes to the ticket's loading site's OTHER gates, never back to its own.
        used = sorted((site, tid) for site, kind, tid in _pending(conn) if kind == "used")
        assert used == sorted([(MINE, t1.id), (GATE2, t2.id), (MINE, t3.id), (GATE2, t3.id),
                               (GATE2, shared.id), (MINE, shared.id)])
        assert conn.execute("SELECT payload->>'site', (payload->>'seq')::int FROM ticket_outbox"
                            " WHERE site = %s AND payload->>'ticket_id' = %s",
                            (MINE, t1.id)).fetchall() == [(GATE2, s2)]
        for g in (g1, g2, other):
            g.close()


# -- distribution over the broker, per-gate ACL ---------------------------------------------

class Listener:
    """A gate's own `tickets` subscription with its own broker credentials."""

    def __init__(self, settings: MqttSettings, site: str) -> None:
        self.site = site
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.granted: list[int] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = make_client(settings, gate_client_id(site))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(settings.host, settings.port, 5)
        self.client.loop_start()
        assert self._subscribed.wait(10), f"{site}: no SUBACK"

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        # Its own topic, and (to prove the ACL holds) the mine's first gate's topic.
        c.subscribe([(topic(self.site, "tickets"), 1), (topic(MINE, "tickets"), 1)])

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append((msg.topic, json.loads(msg.payload)))

    def revoked(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(t, d["ticket_id"]) for t, d in self.got if d.get("type") == "revoked"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(cond: Any, what: str, timeout: float = 15) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not cond():
        if datetime.now(UTC) > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)


def test_both_gates_of_a_mine_get_a_revocation_on_their_own_topics(
    pg_url: str, tmp_path: Path
) -> None:
    users = {"central": "c-pw", MINE: "g1-pw", GATE2: "g2-pw", OTHER: "g3-pw"}
    broker = Mosquitto(tmp_path / "broker", shipped_accounts(tmp_path, users))
    broker.start()
    listeners: list[Listener] = []
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn, psycopg.connect(pg_url) as ing:
            gates = {s: Gate(s, tmp_path, ENT_A) for s in (MINE, GATE2, OTHER)}
            gates[MINE].enrol(conn)
            gates[GATE2].enrol(conn, loading_site=MINE)
            gates[OTHER].enrol(conn)
            issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC))
            ingestor = make_ingestor(ing)
            listeners = [Listener(broker.settings(s, users[s]), s) for s in gates]
            ticket = _issue(conn)
            with TicketPublisher(pg_url, broker.settings("central", users["central"]),
                                 client_id=f"central-tickets-{uuid.uuid4().hex[:6]}") as pub:
                pub.run_once()
                service.void(conn, ticket.id, reason="订单取消", who="sales",
                             now=datetime.now(UTC))
                assert pub.run_once() == 2  # one revocation per gate of the mine
                l1, l2, l3 = listeners
                _wait(lambda: l1.revoked() and l2.revoked(), "the revocation at both gates")
                # A gate that comes online later gets the mine's revocation in its snapshot.
                gates[GATE2].status(ingestor, "online")
                pub.run_once()
                _wait(lambda: len(l2.revoked()) == 2, "gate 2's snapshot")
                threading.Event().wait(0.5)  # let any stray (wrongly routed) message arrive
            assert l1.revoked() == [(topic(MINE, "tickets"), ticket.id)]
            # Gate 2 reads only its own topic: the ACL keeps gate 1's messages from it.
            assert l2.revoked() == [(topic(GATE2, "tickets"), ticket.id)] * 2
            assert l3.revoked() == []
            for g in gates.values():
                g.close()
    finally:
        for listener in listeners:
            listener.close()
        broker.stop()
