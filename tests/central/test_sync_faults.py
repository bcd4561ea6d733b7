"""Faults on the sync path, with a private Mosquitto and the real PostgreSQL.

In every case: zero entries lost, zero stored twice, chain intact (audit_central).
The broker outage is 20 s here (the issue asks for minutes in production; the mechanism —
resend from the last durable ack — does not depend on the length).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from edge_agent.sync.outbox import Outbox
from tests.central.sync_helpers import (
    acked_all,
    audit_central,
    central_count,
    kill,
    make_gate,
    start_gate_proc,
    start_worker,
    start_worker_proc,
    tare_body,
    unique,
    wait_until,
    weigh_through_outage,
    write_worker_config,
)
from tests.support.broker import Mosquitto

OUTAGE_S = 20.0

pytestmark = pytest.mark.slow


def test_edge_sigkill_mid_batch(pg_url: str, mosquitto: Callable[..., Mosquitto],
                                tmp_path: Path) -> None:
    broker = mosquitto()
    worker = start_worker(pg_url, broker.settings(), "ingest", tmp_path)
    gate = make_gate(pg_url, tmp_path)
    log = tmp_path / "gate.log"
    try:
        proc = start_gate_proc(gate.path, gate.signer_file, gate.site, broker.port, 400, 0.002,
                               log, batch=50)
        try:
            wait_until(lambda: central_count(pg_url, gate.site) >= 60, 60, "first batches")
        finally:
            kill(proc)  # SIGKILL: mid-append, mid-publish, mid-ack
        stored_at_kill = central_count(pg_url, gate.site)
        with gate.open() as s:
            size_at_kill = s.size
        assert stored_at_kill < 400
        proc = start_gate_proc(gate.path, gate.signer_file, gate.site, broker.port, 400, 0.0,
                               log, batch=50)
        try:
            wait_until(lambda: central_count(pg_url, gate.site) == 400, 90,
                       f"all 400 entries (log: {log})")
        finally:
            kill(proc)
        assert audit_central(pg_url, gate) == 400
        assert size_at_kill <= 400
    finally:
        worker.halt()


def test_broker_restart(pg_url: str, mosquitto: Callable[..., Mosquitto],
                        tmp_path: Path) -> None:
    broker = mosquitto()
    worker = start_worker(pg_url, broker.settings(), "ingest", tmp_path)
    gate = make_gate(pg_url, tmp_path)
    store = gate.open()
    box = Outbox(store, gate.site, broker.settings(), signer=gate.key, batch_size=25,
                 ack_timeout=3, poll_interval=0.05, client_id=unique("edge"))
    box.start()
    try:
        for round_ in range(3):
            store.append_batch([("weighing", tare_body(gate.site, round_ * 100 + i))
                                for i in range(60)])
            box.notify()
            broker.stop()
            broker.start()
            store.append_batch([("weighing", tare_body(gate.site, round_ * 100 + 60 + i))
                                for i in range(10)])
            box.notify()
        wait_until(lambda: box.acked_seq == store.size - 1, 90, "all acked after restarts")
        assert audit_central(pg_url, gate) == 210
    finally:
        box.stop()
        worker.halt()
        store.close()


def test_broker_down_while_gate_keeps_weighing(pg_url: str,
                                               mosquitto: Callable[..., Mosquitto],
                                               tmp_path: Path) -> None:
    broker = mosquitto()
    worker = start_worker(pg_url, broker.settings(), "ingest", tmp_path)
    gate = make_gate(pg_url, tmp_path)
    store = gate.open()
    box = Outbox(store, gate.site, broker.settings(), signer=gate.key, batch_size=100,
                 ack_timeout=3, poll_interval=0.05, client_id=unique("edge"))
    box.start()
    try:
        store.append_batch([("weighing", tare_body(gate.site, i)) for i in range(50)])
        box.notify()
        wait_until(lambda: box.acked_seq == 49, 30, "first 50 acked")
        broker.stop()
        # The gate keeps weighing: every append is durable locally and never waits.
        n = weigh_through_outage(store, box, gate.site, 50, OUTAGE_S, every_s=0.05,
                                 max_block_s=2.0)
        assert box.acked_seq == 49 and not box.connected
        broker.start()
        wait_until(lambda: box.acked_seq == n - 1, 60, "backlog drained")
        assert audit_central(pg_url, gate) == n
    finally:
        box.stop()
        worker.halt()
        store.close()


def test_central_sigkill_mid_ingest(pg_url: str, mosquitto: Callable[..., Mosquitto],
                                    tmp_path: Path) -> None:
    broker = mosquitto()
    config = write_worker_config(tmp_path / "central.toml", pg_url, broker.settings(),
                                 "ingest", tmp_path / "witness.key")
    log = tmp_path / "central.log"
    gate = make_gate(pg_url, tmp_path)
    store = gate.open()
    box = Outbox(store, gate.site, broker.settings(), signer=gate.key, batch_size=20,
                 ack_timeout=2, poll_interval=0.02, client_id=unique("edge"))
    proc = start_worker_proc(config, log)
    try:
        box.start()
        store.append_batch([("weighing", tare_body(gate.site, i)) for i in range(600)])
        box.notify()
        wait_until(lambda: central_count(pg_url, gate.site) >= 100, 60,
                   f"ingest under way (log: {log})")
        kill(proc)  # SIGKILL, likely inside a transaction or between commit and ack
        at_kill = central_count(pg_url, gate.site)
        assert at_kill < 600
        store.append_batch([("weighing", tare_body(gate.site, 600 + i)) for i in range(50)])
        box.notify()
        proc = start_worker_proc(config, log)
        wait_until(lambda: box.acked_seq == 649, 90, f"all acked after restart (log: {log})")
        assert audit_central(pg_url, gate) == 650
    finally:
        kill(proc)
        box.stop()
        store.close()


def test_two_workers_on_one_shared_subscription(pg_url: str,
                                                mosquitto: Callable[..., Mosquitto],
                                                tmp_path: Path) -> None:
    broker = mosquitto()
    workers = [start_worker(pg_url, broker.settings(), "ingest", tmp_path, name=f"w{i}")
               for i in range(2)]
    gates = [make_gate(pg_url, tmp_path) for _ in range(3)]
    stores = [g.open() for g in gates]
    boxes = [Outbox(s, g.site, broker.settings(), signer=g.key, batch_size=15, ack_timeout=3,
                    poll_interval=0.02, client_id=unique("edge"))
             for g, s in zip(gates, stores, strict=True)]
    stats = []
    try:
        for b in boxes:
            b.start()
        for chunk in range(4):
            for g, s, b in zip(gates, stores, boxes, strict=True):
                s.append_batch([("weighing", tare_body(g.site, chunk * 100 + i))
                                for i in range(50)])
                b.notify()
        for s, b in zip(stores, boxes, strict=True):
            wait_until(partial(acked_all, b, s), 90, "all acked")
        for g in gates:
            assert audit_central(pg_url, g) == 200
    finally:
        for b in boxes:
            b.stop()
        stats = [w.halt() for w in workers]
        for s in stores:
            s.close()
    assert sum(st.stored for st in stats) == 600
    assert all(st.batches > 0 for st in stats), f"the broker did not split the load: {stats}"
