"""Real parts for the central e-ticket tests: gates with real signed ledgers fed through the real
ingest handler (projections + ticket reconciliation), and the real FastAPI app with the tickets
router and pages mounted. Throwaway databases come from tests.support.pg."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI

from central import projections
from central.api import create_app
from central.api.schemas import SiteIn
from central.auth import create_token
from central.ingest.worker import Ingestor
from central.settings import load_settings
from central.sites import enrol_site
from central.tickets import reconcile
from central.tickets.api import router
from central.tickets.pages import pages_router
from central.tickets.settings import TicketSettings
from edge_agent.sync.protocol import CheckpointMessage, LedgerBatch, Status, topic
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from tests.support.http import auth as auth  # re-exported: the ticket tests import it from here

ENT_A = "E610821001"
ENT_B = "E610821002"


def project(cur: Any, site: str, entries: list[Any]) -> None:
    """What the lead wires into the ingest: projections, then ticket reconciliation."""
    projections.apply(cur, site, entries)
    reconcile.apply(cur, site, entries)


def make_ingestor(conn: psycopg.Connection[Any], witness: SignerKey | None = None) -> Ingestor:
    return Ingestor(conn, witness or SignerKey.generate("coalgate-central"), projector=project)


def make_token(url: str, role: str, enterprise: str | None = None) -> str:
    with psycopg.connect(url) as conn:
        text, _ = create_token(conn, role, enterprise=enterprise, label=f"{role}-test")
    return text


class Gate:
    """A gate whose real signed ledger reaches the central through the real ingest handler."""

    def __init__(self, site: str, workdir: Path, enterprise: str) -> None:
        self.site = site
        self.enterprise = enterprise
        self.signer = SignerKey.generate(site)
        self.store = LedgerStore.open(workdir / f"{site}.sqlite", site=site, signer=self.signer)
        self.sent = 0
        self.n = 0

    def enrol(self, conn: psycopg.Connection[Any], name: str = "东磅房",
              loading_site: str | None = None) -> None:
        """Enrol the gate as the CLI and the API do; commits (the caller may hold a transaction)."""
        enrol_site(conn, SiteIn(id=self.site, enterprise=self.enterprise, name=name,
                                verifier_key=self.signer.verifier.to_text(),
                                loading_site=loading_site))
        conn.commit()

    def config(self, *, ticket_required: bool) -> None:
        self.store.append("config", {"sha256": "00" * 32, "agent_version": "test",
                                     "policy": {"ticket_required": ticket_required}})

    def load(self, plate: str, ticket: str | None, *, net: int = 33000, tare: int = 15000,
             axles: int = 6, one_pass: bool = False) -> int:
        """A loaded truck weighed (tare pass first unless one-pass); returns the gross seq."""
        self.n += 1
        txn = f"{self.site}-{datetime.now(UTC):%Y%m%d}-{self.n}"
        common = {"txn": txn, "plate": plate, "plate_conf_pm": 950, "plate_source": "anpr",
                  "axles": axles, "tare_source": "measured", "ticket_id": ticket,
                  "limit_kg": 49000, "reasons": [], "stable_ms": 3000, "snapshot_sha256": None}
        tare_seq = None
        if not one_pass:
            tare_seq = self.store.append("weighing", {
                **common, "pass": "tare", "weight_kg": tare, "gross_kg": None, "tare_kg": tare,
                "net_kg": None, "tare_seq": None, "decision": "release"}).entry.seq
        gross = tare + net
        return self.store.append("weighing", {
            **common, "pass": "one_pass" if one_pass else "gross", "weight_kg": gross,
            "gross_kg": gross, "tare_kg": tare, "net_kg": net, "tare_seq": tare_seq,
            "decision": "release"}).entry.seq

    def push(self, ingestor: Ingestor) -> None:
        entries = tuple(self.store.iter_entries(self.sent))
        if entries:
            ingestor.handle(topic(self.site, "ledger"),
                            LedgerBatch(self.site, self.sent, entries).encode())
            self.sent += len(entries)

    def resend_all(self, ingestor: Ingestor) -> None:
        entries = tuple(self.store.iter_entries(0))
        ingestor.handle(topic(self.site, "ledger"), LedgerBatch(self.site, 0, entries).encode())

    def checkpoint(self, ingestor: Ingestor) -> None:
        note = self.store.sign_checkpoint()
        ingestor.handle(topic(self.site, "checkpoint"),
                        CheckpointMessage(self.site, note).encode())

    def status(self, ingestor: Ingestor, state: str = "online") -> None:
        ingestor.handle(topic(self.site, "status"), Status(state).encode())

    def close(self) -> None:
        self.store.close()


def ticket_app(url: str, settings: TicketSettings) -> FastAPI:
    """The central API as the lead will build it: create_app + the tickets router + pages."""
    app = create_app(load_settings(None, env={"COALGATE_CENTRAL__API__OFFLINE_SWEEP_S": "3600"}),
                     url=url, routers=[router], sweep_offline_sites=False)
    app.include_router(pages_router)
    app.state.tickets = settings
    return app


def alarms(conn: psycopg.Connection[Any], code: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT site, seq, severity, detail FROM alarms WHERE code = %s ORDER BY id", (code,)
    ).fetchall()
