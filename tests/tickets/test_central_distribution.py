"""Distribution of tickets, revocations and the trust list to gates over real Mosquitto.

The gate side is the real ``GateTicketVerifier`` fed by an MQTT v5 client with a persistent
session (fixed client id, clean_start=False, session expiry), as the edge must connect.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.ingest.worker import Ingestor
from central.tickets import issuers, service
from central.tickets.distribution import TicketPublisher, gate_connect_properties
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.protocol import topic
from edge_agent.tickets import GateTicketVerifier
from ledger.keys import SignerKey
from tests.support.broker import Mosquitto
from tests.support.net import wait_port
from tests.support.pg import make_database
from tests.tickets.central_support import ENT_A, Gate, make_ingestor

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))


class GateSubscriber:
    """The gate's `tickets` subscription. Deltas are applied in the test thread (the gate's
    SQLite store belongs to it), in arrival order."""

    def __init__(self, settings: MqttSettings, site: str, verifier: GateTicketVerifier) -> None:
        self.settings = settings
        self.site = site
        self.verifier = verifier
        self.client_id = f"gate-{site}-{uuid.uuid4().hex[:8]}"
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.applied: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    def connect(self, *, clean: bool = False) -> None:
        c = make_client(self.settings, self.client_id)
        subscribed = self._subscribed
        subscribed.clear()

        def on_connect(cl: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
            cl.subscribe(topic(self.site, "tickets"), qos=1)

        def on_subscribe(cl: mqtt.Client, u: Any, mid: int, codes: Any, props: Any) -> None:
            subscribed.set()

        def on_message(cl: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
            self.inbox.put(json.loads(msg.payload))

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        props = gate_connect_properties() if not clean else _expire_now()
        c.connect(self.settings.host, self.settings.port, 5, clean_start=clean,
                  properties=props)
        c.loop_start()
        assert subscribed.wait(10), "gate did not get its SUBACK"
        self.client = c

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        self.client.loop_stop()
        self.client = None

    def drain(self, until: Callable[[], bool], timeout: float = 10.0) -> None:
        """Apply deltas as they arrive until ``until()`` holds."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while not until():
            left = (deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                raise AssertionError(f"gate {self.site}: condition not met; got "
                                     f"{[d['type'] for d in self.applied]}")
            try:
                delta = self.inbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.verifier.apply_delta(delta, now=datetime.now(UTC))
            self.applied.append(delta)

    def forget_session(self) -> None:
        """Leave no session behind on the shared broker."""
        self.connect(clean=True)
        self.disconnect()


def _expire_now() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    return props


@dataclass
class Central:
    url: str
    conn: psycopg.Connection[Any]
    ingestor: Ingestor
    gate: Gate

    def issue(self, plate: str = "陕K8A3B2") -> service.TicketRecord:
        req = service.IssueRequest(enterprise=ENT_A, site=self.gate.site, plate=plate,
                                   buyer="鑫源兰炭", destination="保德县", coal_type="洗混煤",
                                   planned_net_kg=34500)
        return service.issue(self.conn, req, who="sales", now=datetime.now(UTC))

    def void(self, ticket_id: str) -> None:
        service.void(self.conn, ticket_id, reason="订单取消", who="sales",
                     now=datetime.now(UTC))


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    url, drop = make_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as ing:
            gate = Gate("S61082101", tmp_path, ENT_A)
            gate.enrol(conn)
            issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC))
            yield Central(url, conn, make_ingestor(ing), gate)
            gate.close()
    finally:
        drop()


def _verifier(tmp_path: Path, site: str) -> GateTicketVerifier:
    return GateTicketVerifier(site, tmp_path / "gate-tickets.sqlite",
                              trust_roots=[ROOT.verifier])


def _reason(v: GateTicketVerifier, text: str) -> str:
    return v.check(text, plate="陕K8A3B2", now=datetime.now(UTC)).reason


def test_gate_offline_during_a_revocation_gets_it_on_reconnect(
    central: Central, tmp_path: Path
) -> None:
    try:
        wait_port(1883, timeout=2)
    except AssertionError:
        pytest.fail("Mosquitto at 127.0.0.1:1883 is required (scripts/setup test starts it)")
    settings = MqttSettings(host="127.0.0.1", port=1883, keepalive=5)
    verifier = _verifier(tmp_path, central.gate.site)
    gate = GateSubscriber(settings, central.gate.site, verifier)
    gate.connect()
    central.gate.status(central.ingestor, "online")
    try:
        with TicketPublisher(central.url, settings,
                             client_id=f"central-tickets-{uuid.uuid4().hex[:6]}") as pub:
            pub.run_once()  # the snapshot for a gate seen online: the trust list first
            gate.drain(lambda: any(d["type"] == "trust" for d in gate.applied))
            ticket = central.issue()
            assert pub.run_once() == 1
            gate.drain(lambda: any(d["type"] == "issued" for d in gate.applied))
            assert _reason(verifier, ticket.qr) == "ok"
            assert verifier.tickets_for_plate("陕K8A3B2", now=datetime.now(UTC)) == [ticket.qr]

            gate.disconnect()  # the gate goes offline (its last will says so)
            central.gate.status(central.ingestor, "offline")
            central.void(ticket.id)
            assert pub.run_once() == 1  # the broker took it: queued in the gate's session
            pending = central.conn.execute(
                "SELECT count(*) FROM ticket_outbox WHERE published_at IS NULL").fetchone()
            assert pending == (0,)
            assert _reason(verifier, ticket.qr) == "ok"  # offline, it cannot know yet

            gate.connect()  # same client id, clean_start=False
            gate.drain(lambda: any(d["type"] == "revoked" for d in gate.applied))
            assert _reason(verifier, ticket.qr) == "revoked"
    finally:
        gate.forget_session()
        verifier.close()


def test_snapshot_on_reconnect_restores_revocations_the_broker_dropped(
    central: Central, tmp_path: Path
) -> None:
    """Mosquitto keeps at most max_queued_messages per offline client; the publisher's
    snapshot when the gate comes back online makes up for what it dropped."""
    broker = Mosquitto(tmp_path / "broker", "allow_anonymous true\nmax_queued_messages 2\n")
    broker.start()
    settings = broker.settings()
    verifier = _verifier(tmp_path, central.gate.site)
    gate = GateSubscriber(settings, central.gate.site, verifier)
    try:
        gate.connect()
        central.gate.status(central.ingestor, "online")
        with TicketPublisher(central.url, settings) as pub:
            tickets = [central.issue(f"陕K1000{i}") for i in range(5)]
            pub.run_once()
            gate.drain(lambda: sum(d["type"] == "issued" for d in gate.applied) >= 5)
            gate.disconnect()
            central.gate.status(central.ingestor, "offline")
            for t in tickets:
                central.void(t.id)
            assert pub.run_once() == 5
            # Broker down: nothing is marked published, nothing is lost.
            broker.stop()
            extra = central.issue("陕K20000")
            central.void(extra.id)
            assert pub.run_once() == 0
            assert central.conn.execute("SELECT count(*) FROM ticket_outbox"
                                        " WHERE published_at IS NULL").fetchone() == (2,)
            broker.start()
            deadline = datetime.now(UTC) + timedelta(seconds=15)
            while not pub.connected and datetime.now(UTC) < deadline:
                threading.Event().wait(0.1)  # paho reconnects on its own (1 s backoff)
            assert pub.connected, "publisher did not reconnect to the restarted broker"

            gate.connect()
            gate.drain(lambda: sum(d["type"] == "revoked" for d in gate.applied) >= 2)
            revoked = {d["ticket_id"] for d in gate.applied if d["type"] == "revoked"}
            assert len(revoked) < 6, "the broker should have dropped some queued deltas"
            central.gate.status(central.ingestor, "online")  # the gate's status: back
            pub.run_once()
            gate.drain(lambda: {t.id for t in tickets} | {extra.id} <= {
                d.get("ticket_id") for d in gate.applied if d["type"] == "revoked"})
            for t in (*tickets, extra):
                assert verifier.check(t.qr, plate=t.plate, now=datetime.now(UTC)).reason \
                    == "revoked"
    finally:
        if gate.client is not None:
            gate.disconnect()
        broker.stop()
        verifier.close()
