"""The shipped broker config (config/mosquitto/mosquitto.conf + dynamic-security accounts from
`coalgate central broker-accounts`) on a real Mosquitto: a gate's login cannot join the
central's shared ingest subscription, read or write any other site's topics, or take another
gate's client id; with such an attacker present honest ingest loses no ack."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from central.broker_accounts import gate_client_id
from central.ingest.worker import subscriptions
from edge_agent.sync.mqtt import MqttSettings, connect_async, make_client
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import topic
from ledger.private_file import is_private
from tests.central.shipped_broker import ShippedBroker
from tests.central.sync_helpers import (
    audit_central,
    central_count,
    make_gate,
    start_worker,
    tare_body,
    unique,
    wait_until,
)

NOT_AUTHORISED = 0x87


@pytest.fixture
def broker_for(tmp_path: Path) -> Iterator[Any]:
    started: list[ShippedBroker] = []

    def factory(sites: dict[str, str], **kw: Any) -> ShippedBroker:
        b = ShippedBroker(tmp_path / f"broker{len(started)}", "c-secret", sites, **kw).start()
        started.append(b)
        return b

    yield factory
    for b in started:
        b.stop()


class Probe:
    """One connected MQTT client that records CONNACK, SUBACK and disconnect reason codes."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.connack: list[int] = []
        self.subacks: list[list[int]] = []
        self.disconnects: list[int] = []
        self.messages: list[str] = []
        self._ev = threading.Event()
        self.client = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.append(m.topic)
        self.client.reconnect_delay_set(1, 1)
        self.settings = settings

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        self.connack.append(rc.value)
        self._ev.set()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        self.subacks.append([r.value for r in rcs])
        self._ev.set()

    def _on_disconnect(self, c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        self.disconnects.append(rc.value)

    def connect(self, *, persistent: bool = False) -> int:
        self._ev.clear()
        connect_async(self.client, self.settings, session_expiry_s=3600 if persistent else None)
        self.client.loop_start()
        assert self._ev.wait(15), "no CONNACK from the broker within 15 s"
        return self.connack[-1]

    def subscribe(self, filt: str) -> int:
        self._ev.clear()
        self.client.subscribe(filt, qos=1)
        assert self._ev.wait(15), f"no SUBACK for {filt} within 15 s"
        return self.subacks[-1][0]

    def publish(self, name: str, payload: bytes) -> int:
        done = threading.Event()
        codes: list[int] = []

        def on_publish(c: mqtt.Client, u: Any, mid: int, rc: Any, p: Any) -> None:
            codes.append(rc.value)
            done.set()

        self.client.on_publish = on_publish
        self.client.publish(name, payload, qos=1)
        assert done.wait(15), f"no PUBACK for {name} within 15 s"
        return codes[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_gate_login_is_confined_to_its_own_topics(broker_for: Any) -> None:
    broker = broker_for({"mine-a": "a-secret", "mine-b": "b-secret"})
    a = Probe(broker.tls("mine-a", "a-secret"), gate_client_id("mine-a"))
    central = Probe(broker.plain("central", "c-secret"), unique("ingest"))
    try:
        assert a.connect() == 0
        assert central.connect() == 0
        # the central's own subscriptions (the ingest worker's list) are granted …
        for filt, _ in subscriptions("ingest"):
            assert central.subscribe(filt) == 1, filt
        # … the same filters, and any other $share group, from a gate's login are not
        for filt in ("$share/ingest/coalgate/v1/sites/+/ledger",
                     "$share/ingest/coalgate/v1/sites/+/checkpoint",
                     "$share/ingest/coalgate/v1/sites/mine-a/ack",
                     "$share/x/#", "#", "coalgate/v1/sites/+/ledger",
                     "coalgate/v1/sites/mine-b/ack", "coalgate/v1/sites/mine-b/tickets",
                     "coalgate/v1/sites/mine-a/ledger", "$CONTROL/dynamic-security/#"):
            assert a.subscribe(filt) == NOT_AUTHORISED, f"gate mine-a may subscribe {filt}"
        for channel in ("ack", "tickets", "cmd"):
            assert a.subscribe(topic("mine-a", channel)) == 1
        # publishing: its own four topics only
        assert a.publish(topic("mine-a", "status"), b'{"v":1}') == 0
        for name in (topic("mine-b", "ledger"), topic("mine-a", "ack"),
                     topic("mine-b", "tickets"), "coalgate/v1/other"):
            assert a.publish(name, b"x") == NOT_AUTHORISED, f"gate mine-a may publish {name}"
    finally:
        a.close()
        central.close()
    assert is_private(broker.workdir / "var" / "dynamic-security.json")


def test_gate_login_cannot_take_another_gates_client_id(broker_for: Any) -> None:
    broker = broker_for({"mine-a": "a-secret", "mine-b": "b-secret"})
    b = Probe(broker.tls("mine-b", "b-secret"), gate_client_id("mine-b"))
    try:
        assert b.connect(persistent=True) == 0
        for cid in (gate_client_id("mine-b"), "central-tickets", "anything"):
            thief = Probe(broker.tls("mine-a", "a-secret"), cid)
            try:
                assert thief.connect() == NOT_AUTHORISED, f"mine-a logged in as {cid}"
            finally:
                thief.close()
        time.sleep(1)  # a takeover would have disconnected b by now (session takeover 0x8E)
        assert b.disconnects == [], "mine-b was kicked off"
        assert b.subscribe(topic("mine-b", "ack")) == 1
    finally:
        b.close()


def test_hijack_attempt_loses_no_batch(
    pg_url: str, broker_for: Any, tmp_path: Path
) -> None:
    """Two honest gates and the central's ingest on the shipped broker; gate A's credentials
    try to join $share/ingest and to take gate B's client id. Every entry of both gates is
    stored and acked; B is never disconnected."""
    gates = [make_gate(pg_url, tmp_path, "mine"), make_gate(pg_url, tmp_path, "mine")]
    pw = {g.site: f"{g.site}-pw" for g in gates}
    broker = broker_for(pw)
    worker = start_worker(pg_url, broker.plain("central", "c-secret"), "ingest", tmp_path)
    per_gate = 120
    boxes: list[Outbox] = []
    stores = []
    attacker: list[Probe] = []
    try:
        for g in gates:
            store = g.open()
            stores.append(store)
            box = Outbox(store, g.site, broker.tls(g.site, pw[g.site]), signer=g.key,
                         poll_interval=0.05, batch_size=10, session_expiry_s=3600)
            box.start()
            boxes.append(box)
        wait_until(lambda: all(b.connected for b in boxes), 30, "both gates connected")
        a, b = gates
        thief = Probe(broker.tls(a.site, pw[a.site]), unique("thief"))
        attacker.append(thief)
        assert thief.connect() == NOT_AUTHORISED  # a's login may only use edge-<a>
        joiner = Probe(broker.tls(a.site, pw[a.site]), gate_client_id(a.site) + "x")
        assert joiner.connect() == NOT_AUTHORISED
        # a's login with its own client id (as a dishonest gate would) tries to join ingest
        boxes[0].stop()
        dishonest = Probe(broker.tls(a.site, pw[a.site]), gate_client_id(a.site))
        attacker.append(dishonest)
        assert dishonest.connect() == 0
        for filt, _ in subscriptions("ingest"):
            assert dishonest.subscribe(filt) == NOT_AUTHORISED, filt
        stolen = Probe(broker.tls(a.site, pw[a.site]), gate_client_id(b.site))
        attacker.append(stolen)
        assert stolen.connect() == NOT_AUTHORISED
        # gate B weighs while the dishonest login stays connected; then A comes back honestly
        for i in range(per_gate):
            stores[1].append("weighing", tare_body(b.site, i))
            boxes[1].notify()
        wait_until(lambda: boxes[1].acked_seq == per_gate - 1, 60,
                   f"gate B's {per_gate} entries acked with the attacker connected")
        dishonest.close()
        boxes[0] = Outbox(stores[0], a.site, broker.tls(a.site, pw[a.site]), signer=a.key,
                          poll_interval=0.05, batch_size=10, session_expiry_s=3600)
        boxes[0].start()
        for i in range(per_gate):
            stores[0].append("weighing", tare_body(a.site, i))
            boxes[0].notify()
        wait_until(lambda: boxes[0].acked_seq == per_gate - 1, 60,
                   f"gate A's {per_gate} entries acked")
        assert dishonest.messages == [] and thief.messages == []
        assert boxes[1].connected, "gate B was disconnected"
    finally:
        for p in attacker:
            p.close()
        for box in boxes:
            box.stop()
        for s in stores:
            s.close()
        worker.halt()
    for g in gates:
        assert central_count(pg_url, g.site) == per_gate
        assert audit_central(pg_url, g) == per_gate
