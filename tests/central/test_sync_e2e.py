"""End to end through the system Mosquitto into PostgreSQL: three gates, one ingest worker."""

from __future__ import annotations

import json
import threading
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.outbox import ACKED_META_KEY, Outbox
from edge_agent.sync.protocol import topic
from ledger.checkpoint import verify_cosignature
from ledger.keys import read_signer_file
from tests.central.sync_helpers import (
    acked_all,
    alarm_codes,
    audit_central,
    clear_retained,
    cosigned_at,
    make_gate,
    start_worker,
    tare_body,
    unique,
    wait_until,
)


def test_three_gates_store_every_entry_once_in_order(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    worker = start_worker(pg_url, system_broker, unique("grp"), tmp_path)
    gates = [make_gate(pg_url, tmp_path) for _ in range(3)]
    stores = [g.open() for g in gates]
    boxes = [
        Outbox(s, g.site, system_broker, signer=g.key, batch_size=40, poll_interval=0.05,
               checkpoint_interval=0.2, client_id=unique("edge"))
        for g, s in zip(gates, stores, strict=True)
    ]
    try:
        for g, s in zip(gates, stores, strict=True):  # a backlog before the outbox starts …
            s.append_batch([("weighing", tare_body(g.site, i)) for i in range(55)])
        for b in boxes:
            b.start()
        for round_ in range(5):  # … and entries appended while it runs
            for g, s, b in zip(gates, stores, boxes, strict=True):
                s.append("weighing", tare_body(g.site, 100 + round_))
                b.notify()
        for s, b in zip(stores, boxes, strict=True):
            wait_until(partial(acked_all, b, s), 30, "all entries acked")
            wait_until(partial(cosigned_at, b, 60), 30, "cosigned checkpoint")
        witness = read_signer_file(tmp_path / "witness.key").verifier
        for g, b in zip(gates, boxes, strict=True):
            assert audit_central(pg_url, g) == 60
            assert b.cosigned_checkpoint is not None
            verify_cosignature(b.cosigned_checkpoint, witness)
            assert alarm_codes(pg_url, g.site) == []
        with psycopg.connect(pg_url) as conn:
            online = conn.execute(
                "SELECT site, online FROM site_state WHERE site = ANY(%s)",
                ([g.site for g in gates],),
            ).fetchall()
        assert sorted(o for _, o in online) == [True, True, True]
        # the acked seq is durable in the gate's ledger, for the next start
        assert stores[0].get_meta(ACKED_META_KEY) == "59"
        for b in boxes:
            b.stop()

        def all_offline() -> bool:
            with psycopg.connect(pg_url) as conn:
                states = conn.execute(
                    "SELECT online FROM site_state WHERE site = ANY(%s)",
                    ([g.site for g in gates],),
                ).fetchall()
            return all(not online for (online,) in states)

        wait_until(all_offline, 10, "status offline after the outboxes stopped")
    finally:
        for b in boxes:
            b.stop()
        stats = worker.halt()
        for s in stores:
            s.close()
        clear_retained(system_broker, [g.site for g in gates])
    assert stats.stored == 180


def test_tickets_reach_the_callback_and_live_is_published(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path
) -> None:
    gate = make_gate(pg_url, tmp_path)
    got: list[dict[str, Any]] = []
    seen_live: list[dict[str, Any]] = []
    received = threading.Event()
    store = gate.open()

    def on_tickets(delta: dict[str, Any]) -> None:
        got.append(delta)
        received.set()

    box = Outbox(store, gate.site, system_broker, signer=gate.key, poll_interval=0.05,
                 on_tickets=on_tickets,
                 client_id=unique("edge"))
    watcher = make_client(system_broker, unique("watch"))
    live_seen = threading.Event()

    def on_msg(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        seen_live.append(json.loads(msg.payload))
        live_seen.set()

    watcher.on_message = on_msg
    watcher.connect(system_broker.host, system_broker.port)
    watcher.subscribe(topic(gate.site, "live"), qos=0)
    watcher.loop_start()
    try:
        box.start()
        wait_until(lambda: box.connected, 10, "outbox connected")
        delta = {"v": 1, "issued": [{"ticket_id": "T1"}], "revoked": []}
        pub = make_client(system_broker, unique("central-pub"))
        pub.connect(system_broker.host, system_broker.port)
        pub.loop_start()
        pub.publish(topic(gate.site, "tickets"), json.dumps(delta), qos=1).wait_for_publish(5)
        assert received.wait(10)
        assert got == [delta]
        # malformed tickets are logged and dropped, the outbox keeps going
        pub.publish(topic(gate.site, "tickets"), b"garbage", qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()

        def publish_until_seen() -> bool:
            box.publish_live({"weight_kg": 12340, "state": "weighing"})
            return live_seen.wait(0.2)

        wait_until(publish_until_seen, 10, "live message")
        assert seen_live[0] == {"v": 1, "weight_kg": 12340, "state": "weighing"}
        store.append("weighing", {"txn": "after"})
        box.notify()
        wait_until(lambda: box.acked_seq == -1 or box.acked_seq == 0, 1, "no crash")
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        box.stop()
        store.close()
        clear_retained(system_broker, [gate.site])
