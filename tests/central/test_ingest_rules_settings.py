"""The deployment's [rules] settings reach the projections the ingest runs.

Same signed entries, two sites, two rule settings: the alarms differ exactly where the setting
says they should. Then the production wiring: `coalgate central ingest` (python -m
central.ingest) reads [rules] from its TOML file and applies it to entries arriving over MQTT.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from central.ingest.worker import Ingestor
from central.settings import RuleSettings
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import LedgerBatch, topic
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from tests.central.sync_helpers import (
    Gate,
    alarm_codes,
    kill,
    make_gate,
    start_worker_proc,
    tare_body,
    unique,
    wait_until,
    write_worker_config,
)
from tests.support.broker import Mosquitto


def _tare(site: str, i: int, plate: str, kg: int) -> dict[str, Any]:
    return {**tare_body(site, i), "plate": plate, "weight_kg": kg, "tare_kg": kg}


def _gross_without_ticket(site: str, i: int, plate: str) -> dict[str, Any]:
    return {**tare_body(site, i), "pass": "gross", "plate": plate, "weight_kg": 45000,
            "gross_kg": 45000, "tare_kg": 15000, "net_kg": 30000, "ticket_id": None}


def _entries(site: str) -> list[tuple[str, dict[str, Any]]]:
    """Three tares of one truck, a fourth 7 % heavier, then a ticketless loaded pass."""
    plate = "陕K7" + site[-4:].upper()
    tares = [_tare(site, i, plate, kg) for i, kg in enumerate((15000, 15020, 14980, 16050))]
    return [*(("weighing", b) for b in tares),
            ("weighing", _gross_without_ticket(site, 10, plate))]


def _ingest(url: str, gate: Gate, rules: RuleSettings | None) -> list[str]:
    with LedgerStore.open(gate.path, site=gate.site, signer=gate.key) as ledger:
        signed = ledger.append_batch(_entries(gate.site))
    with psycopg.connect(url) as conn:
        ingestor = Ingestor(conn, SignerKey.generate("w"), rules=rules)
        ingestor.handle(topic(gate.site, "ledger"),
                        LedgerBatch(gate.site, 0, tuple(signed)).encode())
        assert ingestor.stats.stored == len(signed), ingestor.stats
    return alarm_codes(url, gate.site)


def test_default_rules_raise_neither_alarm(pg_url: str, tmp_path: Path) -> None:
    codes = _ingest(pg_url, make_gate(pg_url, tmp_path), None)
    assert "tare_out_of_band" not in codes and "no_ticket" not in codes, codes


def test_changed_rules_take_effect(pg_url: str, tmp_path: Path) -> None:
    strict = RuleSettings(tare_band_pm=50, ticket_required_default=True)
    codes = _ingest(pg_url, make_gate(pg_url, tmp_path), strict)
    assert "tare_out_of_band" in codes, codes  # 16,050 kg is 70 ‰ from the median 15,000
    assert "no_ticket" in codes, codes


def test_ingest_command_reads_rules_from_its_config(
    pg_url: str, mosquitto: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto()
    config = write_worker_config(tmp_path / "central.toml", pg_url, broker.settings(),
                                 unique("ingest"), tmp_path / "witness.key")
    with config.open("a") as f:
        f.write("[rules]\ntare_band_pm = 50\nticket_required_default = true\n")
    log = tmp_path / "central.log"
    gate = make_gate(pg_url, tmp_path)
    store = LedgerStore.open(gate.path, site=gate.site, signer=gate.key)
    entries = _entries(gate.site)
    store.append_batch(entries)
    box = Outbox(store, gate.site, broker.settings(), batch_size=50, ack_timeout=3,
                 poll_interval=0.05, client_id=unique("edge"))
    proc = start_worker_proc(config, log)
    try:
        box.start()
        wait_until(lambda: box.acked_seq == len(entries) - 1, 60,
                   f"entries acked by the ingest command (log: {log})")
    finally:
        box.stop()
        kill(proc)
        store.close()
    codes = alarm_codes(pg_url, gate.site)
    assert "tare_out_of_band" in codes and "no_ticket" in codes, (codes, log.read_text())


def test_ingest_command_refuses_a_bad_rules_value(tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "{pg_url}"\n[rules]\ntare_band_pm = "wide"\n')
    log = tmp_path / "central.log"
    proc = start_worker_proc(config, log)
    assert proc.wait(60) == 2
    text = log.read_text()
    assert "rules.tare_band_pm" in text and str(config) in text, text


def test_rule_settings_are_per_worker_not_global(pg_url: str, tmp_path: Path) -> None:
    """Two workers with different rules in one process do not leak into each other."""
    a, b = make_gate(pg_url, tmp_path), make_gate(pg_url, tmp_path)
    strict = _ingest(pg_url, a, RuleSettings(tare_band_pm=50, ticket_required_default=True))
    lax = _ingest(pg_url, b, None)
    assert "no_ticket" in strict and "no_ticket" not in lax
    with psycopg.connect(pg_url) as conn:
        n = conn.execute("SELECT count(*) FROM weighings WHERE site = ANY(%s)",
                         ([a.site, b.site],)).fetchone()
    assert n is not None and n[0] == 10
