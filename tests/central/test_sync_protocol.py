"""MQTT protocol versions: v5 (default, shared subscriptions) and 3.1.1 (amqtt, the demo broker).

Both ends speak either. With 3.1.1 the ingest worker subscribes without ``$share``; the gate
is the same outbox. Also: the outbox's status heartbeat keeps a quiet gate "online".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from central.ingest.settings import settings_from_mapping
from central.ingest.worker import subscriptions
from coalgate.broker import EmbeddedBroker
from edge_agent.sync.mqtt import (
    PROTOCOL_ENV,
    MqttConfigError,
    MqttSettings,
    connect_async,
    make_client,
)
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import topic
from ledger.checkpoint import verify_cosignature
from ledger.keys import read_signer_file
from ledger.store import LedgerStore
from tests.central.sync_helpers import (
    acked_all,
    audit_central,
    clear_retained,
    cosigned_at,
    make_gate,
    start_worker,
    tare_body,
    unique,
    wait_until,
)


def test_protocol_setting_defaults_to_5_and_names_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PROTOCOL_ENV, raising=False)
    assert MqttSettings.from_mapping({}).protocol == "5"
    assert MqttSettings().shared_subscriptions
    old = MqttSettings.from_mapping({"protocol": "3.1.1"})
    assert old.protocol == "3.1.1" and not old.shared_subscriptions
    with pytest.raises(MqttConfigError, match=r"\[mqtt\]\.protocol '4'.*\"3\.1\.1\""):
        MqttSettings.from_mapping({"protocol": "4"})
    with pytest.raises(MqttConfigError, match="Expected str"):
        MqttSettings.from_mapping({"protocol": 5})
    with pytest.raises(MqttConfigError):
        MqttSettings(protocol="3")
    # A process-wide default for configs that do not name it (coalgate demo's gates).
    monkeypatch.setenv(PROTOCOL_ENV, "3.1.1")
    assert MqttSettings().protocol == "3.1.1"
    assert MqttSettings.from_mapping({"protocol": "5"}).protocol == "5"


def test_central_config_carries_the_protocol(tmp_path: Path) -> None:
    s = settings_from_mapping({"mqtt": {"protocol": "3.1.1"}}, base=tmp_path)
    assert s.mqtt.protocol == "3.1.1"


def test_subscriptions_are_shared_only_on_v5() -> None:
    shared = subscriptions("g1")
    assert [t for t, _ in shared][:2] == ["$share/g1/coalgate/v1/sites/+/ledger",
                                          "$share/g1/coalgate/v1/sites/+/checkpoint"]
    plain = subscriptions("g1", shared_subscriptions=False)
    assert all("$share" not in t for t, _ in plain)
    assert {t for t, _ in plain} == {"coalgate/v1/sites/+/ledger",
                                     "coalgate/v1/sites/+/checkpoint",
                                     "coalgate/v1/sites/+/status"}
    assert all(q == 1 for _, q in plain)


@pytest.fixture
def amqtt_broker() -> Iterator[MqttSettings]:
    """The demo's in-process broker (amqtt, MQTT 3.1.1) on its own event loop thread."""
    loop = asyncio.new_event_loop()
    broker = EmbeddedBroker()
    thread = threading.Thread(target=loop.run_forever, name="amqtt", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(15)
    try:
        yield MqttSettings(port=broker.port, protocol="3.1.1", keepalive=5)
    finally:
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_v5_clients_are_refused_by_amqtt(amqtt_broker: MqttSettings) -> None:
    refused = threading.Event()
    v5 = MqttSettings(port=amqtt_broker.port, protocol="5")
    client = make_client(v5, unique("v5"))

    def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.set()

    client.on_connect = on_connect
    connect_async(client, v5)
    client.loop_start()
    try:
        assert refused.wait(10), "amqtt accepted an MQTT v5 client"
    finally:
        client.loop_stop()


def _run_gates(pg_url: str, broker: MqttSettings, worker_mqtt: MqttSettings,
               tmp_path: Path) -> None:
    worker = start_worker(pg_url, worker_mqtt, unique("grp"), tmp_path)
    gates = [make_gate(pg_url, tmp_path) for _ in range(2)]
    stores = [g.open() for g in gates]
    boxes = [Outbox(s, g.site, broker, signer=g.key, batch_size=25, poll_interval=0.05,
                    checkpoint_interval=0.2, client_id=unique("edge"))
             for g, s in zip(gates, stores, strict=True)]
    try:
        for g, s in zip(gates, stores, strict=True):
            s.append_batch([("weighing", tare_body(g.site, i)) for i in range(40)])
        for b in boxes:
            b.start()
        for g, s, b in zip(gates, stores, boxes, strict=True):
            s.append("weighing", tare_body(g.site, 99))
            b.notify()
        for s, b in zip(stores, boxes, strict=True):
            wait_until(partial(acked_all, b, s), 30, "all entries acked")
            wait_until(partial(cosigned_at, b, 41), 30, "a cosigned checkpoint")
        witness = read_signer_file(tmp_path / "witness.key").verifier
        for g, b in zip(gates, boxes, strict=True):
            assert audit_central(pg_url, g) == 41
            assert b.cosigned_checkpoint is not None
            verify_cosignature(b.cosigned_checkpoint, witness)
    finally:
        for b in boxes:
            b.stop()
        stats = worker.halt()
        for s in stores:
            s.close()
        clear_retained(broker, [g.site for g in gates])
    assert stats.stored == 82 and stats.rejected == 0


def test_gates_and_ingest_over_mqtt_311_in_process_broker(
    pg_url: str, amqtt_broker: MqttSettings, tmp_path: Path
) -> None:
    _run_gates(pg_url, amqtt_broker, amqtt_broker, tmp_path)


def test_311_gates_with_a_v5_ingest_worker_on_mosquitto(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    gate_side = MqttSettings(host=system_broker.host, port=system_broker.port,
                             protocol="3.1.1")
    worker_side = MqttSettings(host=system_broker.host, port=system_broker.port, protocol="5")
    _run_gates(pg_url, gate_side, worker_side, tmp_path)


def test_a_quiet_gate_repeats_its_online_status(
    system_broker: MqttSettings, tmp_path: Path
) -> None:
    from ledger.keys import SignerKey

    site = unique("quiet")
    key = SignerKey.generate(site)
    store = LedgerStore.open(tmp_path / "l.db", site=site, signer=key)
    seen: list[bytes] = []
    sub = make_client(system_broker, unique("watch"))

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        seen.append(bytes(msg.payload))

    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, r, p: c.subscribe(topic(site, "status"), 1)
    connect_async(sub, system_broker)
    sub.loop_start()
    box = Outbox(store, site, system_broker, signer=key, poll_interval=0.05,
                 heartbeat_interval=0.3, client_id=unique("edge"))
    try:
        box.start()
        wait_until(lambda: sum(b"online" in p for p in seen) >= 4, 15,
                   "repeated online status from an idle gate")
    finally:
        box.stop()
        sub.loop_stop()
        store.close()
        clear_retained(system_broker, [site])


def test_in_process_broker_logins_and_per_site_acl(tmp_path: Path) -> None:
    """The demo broker enforces what config/mosquitto/acl does: own topic only, login needed."""
    from coalgate.broker import site_acls

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="amqtt-acl", daemon=True)
    thread.start()
    publish, subscribe = site_acls(["mine-a", "mine-b"])
    broker = EmbeddedBroker(users={"mine-a": "pa", "mine-b": "pb", "central": "pc"},
                            publish_acl=publish, subscribe_acl=subscribe, state_dir=tmp_path)
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(15)
    assert (tmp_path / "broker.passwd").stat().st_mode & 0o077 == 0
    clients: list[mqtt.Client] = []
    results: dict[str, str] = {}
    got: list[str] = []

    def connect(name: str, user: str | None, password: str | None) -> mqtt.Client:
        s = MqttSettings(port=broker.port, protocol="3.1.1", username=user, password=password)
        c = make_client(s, unique(name))

        def on_connect(cl: mqtt.Client, u: object, f: object, reason: object,
                       p: object) -> None:
            results[name] = str(reason)

        c.on_connect = on_connect
        connect_async(c, s)
        c.loop_start()
        clients.append(c)
        return c

    try:
        central = connect("central", "central", "pc")
        central.on_message = lambda c, u, m: got.append(m.topic)
        a = connect("a", "mine-a", "pa")
        connect("wrong", "mine-a", "pb")
        connect("anonymous", None, None)
        wait_until(lambda: len(results) == 4, 30, "four connection results")
        assert results["central"] == results["a"] == "Success"
        assert results["wrong"] == results["anonymous"] == "Not authorized"
        # Publish only once the broker has acknowledged the subscription (its SUBACK), not
        # after a guessed pause: on a loaded machine the pause may be too short.
        subscribed = threading.Event()
        central.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        central.subscribe("coalgate/v1/sites/+/ledger", 1)
        assert subscribed.wait(30), "the broker did not acknowledge the central's SUBSCRIBE"
        a.publish(topic("mine-b", "ledger"), b"{}", qos=1).wait_for_publish(30)
        a.publish(topic("mine-a", "ledger"), b"{}", qos=1).wait_for_publish(30)
        wait_until(lambda: topic("mine-a", "ledger") in got, 30, "mine-a's own ledger message")
        # mine-b's message was published first on the same connection and subscription, so
        # had the broker let it through it would have been delivered before mine-a's; the
        # short pause only gives a misbehaving broker extra rope.
        time.sleep(0.3)
        assert got == [topic("mine-a", "ledger")], "a site published under another's topic"
    finally:
        for c in clients:
            c.loop_stop()
        asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
