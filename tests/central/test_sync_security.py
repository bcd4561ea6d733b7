"""Security on the sync path: broker accounts (the shipped config/mosquitto/, more in
test_broker_hardening.py and test_broker_tls.py), wrong keys,
forged entries, another site's topic, malformed payloads — refused, alarmed, ingest goes on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from central.broker_accounts import gate_client_id
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import LedgerBatch, topic
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from tests.central.shipped_broker import ShippedBroker
from tests.central.sync_helpers import (
    alarm_codes,
    audit_central,
    central_count,
    clear_retained,
    make_gate,
    start_worker,
    tare_body,
    unique,
    wait_until,
)


def _publish_rc(settings: MqttSettings, topic_name: str, payload: bytes,
                client_id: str | None = None) -> int:
    """Publish QoS 1 and return the PUBACK reason code value (MQTT 5)."""
    done = threading.Event()
    codes: list[int] = []
    client = make_client(settings, client_id or unique("pub"))

    def on_publish(c: mqtt.Client, u: Any, mid: int, rc: Any, props: Any) -> None:
        codes.append(rc.value)
        done.set()

    client.on_publish = on_publish
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        client.publish(topic_name, payload, qos=1)
        assert done.wait(10), "no PUBACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return codes[0]


def _connect_rc(settings: MqttSettings, client_id: str | None = None) -> int:
    done = threading.Event()
    codes: list[int] = []
    client = make_client(settings, client_id or unique("conn"))

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        codes.append(rc.value)
        done.set()

    client.on_connect = on_connect
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return codes[0]


def test_broker_acl_confines_each_site_to_its_own_topics(pg_url: str, tmp_path: Path) -> None:
    a = make_gate(pg_url, tmp_path, "mine")
    b = make_gate(pg_url, tmp_path, "mine")
    broker = ShippedBroker(tmp_path / "broker", "c-secret",
                           {a.site: "a-secret", b.site: "b-secret"}).start()
    central = broker.plain("central", "c-secret")
    as_a = broker.tls(a.site, "a-secret")
    worker = start_worker(pg_url, central, "ingest", tmp_path)
    try:
        with a.open() as sa:
            entries = sa.append_batch([("weighing", tare_body(a.site, i)) for i in range(3)])
        batch = LedgerBatch(b.site, 0, tuple(entries)).encode()
        # site A publishing on site B's topic: refused by the broker (0x87 not authorised)
        assert _publish_rc(as_a, topic(b.site, "ledger"), batch,
                           gate_client_id(a.site)) == 0x87
        # wrong password: refused at connect (Mosquitto 2.0 answers 0x87 not authorised;
        # 0x86 bad user name or password is the other spec-conformant answer)
        assert _connect_rc(broker.tls(a.site, "nope")) in (0x86, 0x87)
        assert _connect_rc(broker.tls(a.site, "a-secret"), gate_client_id(a.site)) == 0
        # site A on its own topic, with its own credentials, through the outbox: stored
        store = a.open()
        box = Outbox(store, a.site, as_a, signer=a.key, poll_interval=0.05)
        box.start()
        try:
            wait_until(lambda: box.acked_seq == 2, 30, "site A acked")
        finally:
            box.stop()
            store.close()
        assert audit_central(pg_url, a) == 3
        assert central_count(pg_url, b.site) == 0
    finally:
        worker.halt()
        broker.stop()


def test_gate_with_wrong_key_is_refused_and_alarmed(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    worker = start_worker(pg_url, system_broker, unique("grp"), tmp_path)
    gate = make_gate(pg_url, tmp_path)
    impostor = SignerKey.generate(gate.site)
    store = LedgerStore.open(tmp_path / "impostor.db", site=gate.site, signer=impostor)
    store.append_batch([("weighing", tare_body(gate.site, i)) for i in range(5)])
    box = Outbox(store, gate.site, system_broker, signer=impostor, poll_interval=0.05,
                 ack_timeout=1, client_id=unique("edge"))
    box.start()
    try:
        wait_until(lambda: "tamper_signature" in alarm_codes(pg_url, gate.site), 20,
                   "tamper_signature alarm")
        wait_until(lambda: worker.stop.is_set() or box.batches_sent >= 2, 20, "a resend")
        assert central_count(pg_url, gate.site) == 0
        assert box.acked_seq == -1
        # resending the same forgery does not flood the alarm list
        assert alarm_codes(pg_url, gate.site) == ["tamper_signature"]
    finally:
        box.stop()
        store.close()
        worker.halt()
        clear_retained(system_broker, [gate.site])


def test_another_sites_entries_and_garbage_on_a_topic(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    """With a permissive broker the central itself refuses entries for another site's topic
    (tamper_topic), and malformed payloads never stop ingest."""
    worker = start_worker(pg_url, system_broker, unique("grp"), tmp_path)
    a = make_gate(pg_url, tmp_path)
    b = make_gate(pg_url, tmp_path)
    try:
        with a.open() as sa:
            a_entries = sa.append_batch([("weighing", tare_body(a.site, i)) for i in range(3)])
        for junk in (b"", b"\xff\x00garbage", b"[1,2,3]", b'{"v":1,"entries":"no"}',
                     b'{"v":9}', b"{" * 10000):
            assert _publish_rc(system_broker, topic(b.site, "ledger"), junk) == 0
        assert _publish_rc(system_broker, topic(b.site, "checkpoint"), b"nonsense") == 0
        assert _publish_rc(system_broker, topic(b.site, "ledger"),
                           LedgerBatch(b.site, 0, tuple(a_entries)).encode()) == 0
        wait_until(lambda: "tamper_topic" in alarm_codes(pg_url, b.site), 20,
                   "tamper_topic alarm")
        assert central_count(pg_url, b.site) == 0
        # ingest is still running: site B's genuine entries are stored
        with b.open() as sb:
            sb.append_batch([("weighing", tare_body(b.site, i)) for i in range(4)])
            genuine = list(sb.iter_entries(0, 4))
        assert _publish_rc(system_broker, topic(b.site, "ledger"),
                           LedgerBatch(b.site, 0, tuple(genuine)).encode()) == 0
        wait_until(lambda: central_count(pg_url, b.site) == 4, 20, "genuine entries stored")
        assert audit_central(pg_url, b) == 4
    finally:
        stats = worker.halt()
    assert stats.malformed >= 7
