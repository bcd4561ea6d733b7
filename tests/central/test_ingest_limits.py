"""Limits in the ingest (issue 12, item 5), with the real worker on real Mosquitto and
PostgreSQL: a rejected message carrying a 6 MB field becomes neither a 6 MB database row nor a
6 MB log line, and rejected messages are cleaned up by age and count."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from central.db import DatabaseSettings
from central.ingest import store
from central.ingest.settings import IngestSettings
from central.ingest.worker import run_ingest
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.protocol import topic
from tests.central.sync_helpers import make_gate, unique, wait_until


def _rejected(url: str, site: str) -> list[tuple[int, int, int]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT length(detail), length(topic), octet_length(payload) FROM rejected_messages"
            " WHERE site = %s", (site,)).fetchall()]


def _payloads(url: str, site: str) -> set[bytes]:
    with psycopg.connect(url) as conn:
        return {bytes(r[0]) for r in conn.execute(
            "SELECT payload FROM rejected_messages WHERE site = %s", (site,)).fetchall()}


def test_a_6_mb_field_is_neither_a_6_mb_row_nor_log_line_and_rejects_are_pruned(
    pg_url: str, system_broker: MqttSettings, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = make_gate(pg_url, tmp_path, "limits")
    with psycopg.connect(pg_url) as conn:  # an old reject, due for the age rule
        conn.execute("INSERT INTO rejected_messages (site, topic, reason, detail, payload,"
                     " received_at) VALUES (%s, 't', 'malformed', 'old', '', %s)",
                     (gate.site, datetime.now(UTC) - timedelta(days=40)))
    settings = IngestSettings(database=DatabaseSettings(url=pg_url), mqtt=system_broker,
                              witness_key_file=tmp_path / "witness.key",
                              share_group=unique("grp"), client_id=unique("ingest-limits"),
                              rejected_keep_days=30, rejected_keep_max=3,
                              rejected_prune_s=1.0)
    stop, ready = threading.Event(), threading.Event()
    caplog.set_level(logging.INFO)
    worker = threading.Thread(target=run_ingest, args=(settings, stop),
                              kwargs={"ready": ready, "url": pg_url}, daemon=True)
    worker.start()
    try:
        assert ready.wait(15), "ingest worker did not connect and subscribe"
        wait_until(lambda: _rejected(pg_url, gate.site) == [], 20,
                   "the 40-day-old rejected message to be cleaned up")
        big = json.dumps({"v": "x" * (6 * 1024 * 1024), "site": gate.site}).encode()
        client = make_client(system_broker, unique("pub"))
        client.connect(system_broker.host, system_broker.port)
        client.loop_start()
        try:
            client.publish(topic(gate.site, "ledger"), big, qos=1).wait_for_publish(30)
            wait_until(lambda: len(_rejected(pg_url, gate.site)) == 1, 60,
                       "the 6 MB malformed batch to be recorded as rejected")
            (detail_len, _, payload_len), = _rejected(pg_url, gate.site)
            assert detail_len < 3000 and payload_len <= 64 * 1024
            longest = max(len(r.getMessage()) for r in caplog.records)
            assert longest < 5000, f"a log line of {longest} characters"
            assert any("characters cut" in r.getMessage() for r in caplog.records)
            # The count rule: only the newest 3 are kept.
            for i in range(5):
                client.publish(topic(gate.site, "ledger"), f"not json {i}".encode(),
                               qos=1).wait_for_publish(30)
            newest = {f"not json {i}".encode() for i in (2, 3, 4)}
            wait_until(lambda: _payloads(pg_url, gate.site) == newest, 60,
                       "rejected messages beyond the newest 3 to be cleaned up")
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        stop.set()
        worker.join(15)
    assert store.clip("a" * 10, 4) == "aaaa… [6 more characters cut]"
