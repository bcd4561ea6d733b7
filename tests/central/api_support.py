"""Helpers for the API, projection and dashboard tests.

Real parts throughout: a throwaway PostgreSQL database per test module (tests.support.pg), a
real gate ledger (ledger.store) whose batches go through the real ingest handler
(central.ingest.worker), and the real FastAPI app (in-process client, or
tests.support.api_server for streams and browsers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from central.auth import create_token
from central.ingest.worker import Ingestor
from central.settings import Settings, load_settings
from edge_agent.sync.protocol import CheckpointMessage, LedgerBatch, Status, topic
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from tests.support.http import auth as auth  # re-exported: the API tests import it from here


def api_settings(**env: str) -> Settings:
    base = {"COALGATE_CENTRAL__API__OFFLINE_SWEEP_S": "3600"}
    base.update({f"COALGATE_CENTRAL__{k.upper()}": v for k, v in env.items()})
    return load_settings(None, env=base)


def token(url: str, role: str, enterprise: str | None = None, label: str = "") -> str:
    with psycopg.connect(url) as conn:
        text, _ = create_token(conn, role, enterprise=enterprise, label=label or role)
    return text


class Gate:
    """A simulated gate: a real signed ledger whose entries reach the central through the
    real ingest handler, as MQTT messages would."""

    def __init__(self, site: str, workdir: Path, enterprise: str = "榆林示范煤业") -> None:
        self.site = site
        self.enterprise = enterprise
        self.signer = SignerKey.generate(site)
        self.store = LedgerStore.open(workdir / f"{site}.sqlite", site=site, signer=self.signer)
        self.sent = 0
        self.txn_no = 0

    @property
    def verifier_text(self) -> str:
        return self.signer.verifier.to_text()

    def enrol_body(self, name: str = "东磅房") -> dict[str, Any]:
        return {"id": self.site, "enterprise": self.enterprise, "name": name,
                "lat": 38.28, "lon": 109.73, "verifier_key": self.verifier_text}

    def txn(self) -> str:
        self.txn_no += 1
        return f"{self.site}-{datetime.now(UTC):%Y%m%d}-{self.txn_no}"

    def append(self, kind: str, body: dict[str, Any]) -> int:
        return self.store.append(kind, body).entry.seq

    def config(self, *, ticket_required: bool) -> None:
        """The entry a gate writes at every start, announcing its policy."""
        self.append("config", {"sha256": "00" * 32, "agent_version": "test",
                               "policy": {"ticket_required": ticket_required}})

    def truck(self, plate: str, *, tare: int = 15000, gross: int = 48000, axles: int = 6,
              limit: int = 49000, ticket: str | None = "", coal_type: str | None = "块煤",
              released: bool = True) -> str:
        """A two-pass truck: tare in, gross out, barrier, exit passage. ``ticket``: "" for a
        fresh ticket id of its own, None for no ticket, or a given id (to reuse one)."""
        txn = self.txn()
        if ticket == "":
            ticket = f"T-{txn}"
        common = {"txn": txn, "plate": plate, "plate_conf_pm": 960, "plate_source": "anpr",
                  "axles": axles, "tare_source": "measured", "ticket_id": ticket,
                  "limit_kg": limit, "reasons": [], "stable_ms": 3000,
                  "snapshot_sha256": None}
        if coal_type is not None:
            common["coal_type"] = coal_type
        tare_seq = self.append("weighing", {**common, "pass": "tare", "weight_kg": tare,
                                            "gross_kg": None, "tare_kg": tare, "net_kg": None,
                                            "tare_seq": None, "decision": "release"})
        decision = "release" if released else "hold"
        self.append("weighing", {**common, "pass": "gross", "weight_kg": gross,
                                 "gross_kg": gross, "tare_kg": tare, "net_kg": gross - tare,
                                 "tare_seq": tare_seq, "decision": decision})
        if released:
            self.append("barrier", {"txn": txn, "action": "up", "cause": "decision"})
        self.append("passage", {"txn": txn, "direction": "exit", "released": released})
        self.append("barrier", {"txn": txn, "action": "down", "cause": "timeout"})
        return txn

    def push(self, ingestor: Ingestor) -> list[Any]:
        """Send everything not yet sent as one ledger batch; returns the ingest's replies."""
        entries = tuple(self.store.iter_entries(self.sent))
        if not entries:
            return []
        batch = LedgerBatch(self.site, self.sent, entries)
        replies = ingestor.handle(topic(self.site, "ledger"), batch.encode())
        self.sent += len(entries)
        return replies

    def checkpoint(self, ingestor: Ingestor) -> None:
        note = self.store.sign_checkpoint()
        ingestor.handle(topic(self.site, "checkpoint"), CheckpointMessage(self.site, note).encode())

    def status(self, ingestor: Ingestor, state: str = "online") -> None:
        ingestor.handle(topic(self.site, "status"), Status(state).encode())

    def close(self) -> None:
        self.store.close()
