"""Issue 7, must hold "Offline", end to end with real parts.

Real Mosquitto (private, on a free port, so the test can stop it, with the shipped per-site ACL
config/mosquitto/ accounts and a password per gate), real PostgreSQL (throwaway database), the real
central ingest worker and ticket publisher, and two gates built from the components the agent
runtime wires together: ``LedgerStore`` + ``Outbox`` (persistent MQTT session, ticket deltas
applied by the outbox thread) + ``GateTicketVerifier``.

The two gates are two weighbridges of one mine: gate 1 is the loading site the tickets name,
gate 2 has its own ledger (site id ``<site>-2``), is enrolled with that loading site
(``sites.loading_site``) and checks tickets against it (``[tickets] site``). Each gate reads
only its own ``tickets`` topic (the ACL); the central publishes the mine's deltas to both.
That is the only way one valid ticket can pass two gates while they are offline: a single gate
refuses a second use itself, and a gate of another loading site refuses it as ``wrong_site``.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from central.api.schemas import SiteIn
from central.broker_accounts import gate_client_id
from central.sites import enrol_site
from central.tickets import issuers, service
from central.tickets.distribution import TicketPublisher
from edge_agent.sync.mqtt import GATE_SESSION_EXPIRY_S, MqttSettings
from edge_agent.sync.outbox import Outbox
from edge_agent.tickets import GateTicketVerifier
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from ledger.ticket import issue_ticket, parse_ticket
from tests.central.sync_helpers import start_worker, wait_until
from tests.support.broker import Mosquitto, shipped_accounts
from tests.tickets.central_support import ENT_A

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
SITE = "S61082101"
SITE2 = "S61082101-2"
PLATE = "陕K8A3B2"


class GateUnderTest:
    """One gate: its ledger (written here, as the runtime does), its outbox thread (which
    applies ticket deltas to the verifier), and the verifier used from this thread."""

    def __init__(self, site: str, ticket_site: str, workdir: Path,
                 settings: MqttSettings) -> None:
        self.site = site
        self.signer = SignerKey.generate(site)
        self.store = LedgerStore.open(workdir / f"{site}.sqlite", site=site, signer=self.signer)
        self.verifier = GateTicketVerifier(ticket_site, workdir / f"{site}-tickets.sqlite",
                                           trust_roots=[ROOT.verifier], gate_site=site)
        self.deltas: list[str] = []
        self.errors: list[str] = []
        self.outbox = Outbox(
            self.store, site, settings, signer=self.signer, batch_size=50, ack_timeout=3,
            poll_interval=0.05, checkpoint_interval=3600, heartbeat_interval=3600,
            on_tickets=self._on_tickets, session_expiry_s=GATE_SESSION_EXPIRY_S,
            client_id=gate_client_id(site),
        )
        self.loading_site = ticket_site
        self.n = 0

    def _on_tickets(self, delta: dict[str, Any]) -> None:
        # The outbox thread: the verifier gives it its own SQLite connection. The outbox logs
        # and drops a callback's exception; keep it, so the test sees a refused delta.
        try:
            self.verifier.apply_delta(delta, now=datetime.now(UTC))
        except Exception as exc:
            self.errors.append(f"{delta.get('type')}: {exc}")
            raise
        self.deltas.append(str(delta.get("type")))

    def enrol(self, conn: psycopg.Connection[Any]) -> None:
        # As `coalgate central site enroll <site> --loading-site <mine>` does.
        enrol_site(conn, SiteIn(id=self.site, enterprise=ENT_A, name=self.site,
                                verifier_key=self.signer.verifier.to_text(),
                                loading_site=self.loading_site))
        self.store.append("config", {"sha256": "00" * 32, "agent_version": "test",
                                     "policy": {"ticket_required": True}})

    def reason(self, qr: str, plate: str = PLATE) -> str:
        return self.verifier.check(qr, plate=plate, now=datetime.now(UTC)).reason

    def weigh(self, qr: str, plate: str = PLATE) -> str:
        """A loaded truck at the barrier: check the ticket; on "ok" record the weighing that
        names it and mark it used (what the gate controller's MarkTicketUsed does)."""
        check = self.verifier.check(qr, plate=plate, now=datetime.now(UTC))
        if not check.ok:
            return check.reason
        assert check.ticket is not None
        self.n += 1
        txn = f"{self.site}-{datetime.now(UTC):%Y%m%d}-{self.n}"
        common = {"txn": txn, "plate": plate, "plate_conf_pm": 950, "plate_source": "anpr",
                  "axles": 6, "tare_source": "measured", "ticket_id": check.ticket.ticket_id,
                  "limit_kg": 49000, "reasons": [], "stable_ms": 3000,
                  "snapshot_sha256": None}
        tare = self.store.append("weighing", {
            **common, "pass": "tare", "weight_kg": 15000, "gross_kg": None, "tare_kg": 15000,
            "net_kg": None, "tare_seq": None, "decision": "release"}).entry.seq
        gross = self.store.append("weighing", {
            **common, "pass": "gross", "weight_kg": 48000, "gross_kg": 48000,
            "tare_kg": 15000, "net_kg": 33000, "tare_seq": tare,
            "decision": "release"}).entry.seq
        self.verifier.mark_used(check.ticket.ticket_id, seq=gross, now=datetime.now(UTC))
        self.outbox.notify()
        return "ok"

    def synced(self) -> bool:
        return self.outbox.connected and self.outbox.acked_seq == self.store.size - 1

    def close(self) -> None:
        self.outbox.stop()
        self.verifier.close()
        self.store.close()


@dataclass
class Tickets:
    valid1: str
    valid2: str
    shared: str
    revoked: str
    expired: str
    forged: str


def _issue(conn: psycopg.Connection[Any], *, now: datetime, hours: float = 48) -> str:
    req = service.IssueRequest(enterprise=ENT_A, site=SITE, plate=PLATE, buyer="鑫源兰炭",
                               destination="保德县", coal_type="洗混煤", planned_net_kg=34500,
                               valid_from=now, valid_to=now + timedelta(hours=hours))
    return service.issue(conn, req, who="sales", now=now).qr


def test_gates_verify_offline_and_the_central_flags_the_ticket_used_at_both(
    pg_url: str, tmp_path: Path
) -> None:
    users = {"central": "c-secret", SITE: "g1-secret", SITE2: "g2-secret"}
    broker = Mosquitto(tmp_path / "broker", shipped_accounts(tmp_path, users))
    broker.start()
    settings = broker.settings("central", users["central"])
    gate1 = GateUnderTest(SITE, SITE, tmp_path, broker.settings(SITE, users[SITE]))
    gate2 = GateUnderTest(SITE2, SITE, tmp_path, broker.settings(SITE2, users[SITE2]))
    worker = None
    stop_pub = threading.Event()
    pub_thread: threading.Thread | None = None
    conn = psycopg.connect(pg_url, autocommit=True)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        gate1.enrol(conn)
        gate2.enrol(conn)
        # The issuer key dates from two days back, so an expired ticket is a genuine one.
        issuers.create_issuer_key(conn, ENT_A, ROOT, now=now - timedelta(days=2))
        worker = start_worker(pg_url, settings, "g", tmp_path)
        pub = TicketPublisher(pg_url, settings, client_id=f"central-tickets-{uuid.uuid4().hex[:6]}")
        pub.start()
        pub_thread = threading.Thread(target=pub.run, args=(stop_pub, 0.1), daemon=True)
        pub_thread.start()
        for g in (gate1, gate2):
            g.outbox.start()
        wait_until(lambda: gate1.synced() and gate2.synced(), 30, "both gates online, synced")
        # Both gates came online: the publisher's snapshot gives them the trust list.
        wait_until(lambda: "trust" in gate1.deltas and "trust" in gate2.deltas, 30,
                   "the trust list at both gates")

        rogue = SignerKey.generate(ENT_A)  # same enterprise name, not in the trust list
        valid1 = _issue(conn, now=now)
        t = Tickets(
            valid1=valid1, valid2=_issue(conn, now=now), shared=_issue(conn, now=now),
            revoked=_issue(conn, now=now),
            expired=_issue(conn, now=now - timedelta(days=1), hours=2),
            forged=issue_ticket(parse_ticket(valid1).ticket, rogue),
        )
        service.void(conn, parse_ticket(t.revoked).ticket.ticket_id, reason="订单取消",
                     who="sales", now=datetime.now(UTC))
        # While online, the revocation reaches both gates, each on its own topic.
        wait_until(lambda: gate1.reason(t.revoked) == "revoked"
                   and gate2.reason(t.revoked) == "revoked", 30, "the revocation at both gates")
        # An honest use at gate 1 while online: the central tells gate 2, which refuses it.
        early = _issue(conn, now=now)
        assert gate1.weigh(early) == "ok"
        wait_until(lambda: gate2.reason(early) == "used", 30, "gate 1's use known at gate 2")

        broker.stop()  # the outage
        wait_until(lambda: not gate1.outbox.connected and not gate2.outbox.connected, 30,
                   "both gates to see the broker gone")
        for g, own in ((gate1, t.valid1), (gate2, t.valid2)):
            assert g.weigh(own) == "ok"
            assert g.weigh(t.revoked) == "revoked"
            assert g.weigh(t.expired) == "expired"
            assert g.weigh(t.valid1 if g is gate2 else t.valid2, plate="晋A12345") \
                == "wrong_plate"
            assert g.weigh(t.forged) == "unknown_issuer"
            assert g.weigh(t.forged[:-3] + ("AAA" if not t.forged.endswith("AAA") else "BBB")) \
                in ("malformed", "bad_signature", "unknown_issuer")
            assert g.weigh(own) == "used"  # twice at one gate: refused there
            assert g.weigh(t.shared) == "ok"  # the same ticket at both gates: neither can know
        sizes = {g.site: g.store.size for g in (gate1, gate2)}

        broker.start()  # back online: the outboxes resend from their last acked seq
        wait_until(lambda: gate1.synced() and gate2.synced(), 60, "both gates drained")
        shared_id = parse_ticket(t.shared).ticket.ticket_id

        def reused() -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT site, detail FROM alarms WHERE code = 'ticket_reused' ORDER BY id"
            ).fetchall()

        wait_until(lambda: len(reused()) >= 1, 30, "the ticket_reused alarm")
        for site, size in sizes.items():
            stored = conn.execute("SELECT count(*), min(seq), max(seq) FROM entries WHERE site"
                                  " = %s", (site,)).fetchone()
            assert stored == (size, 0, size - 1), f"{site}: {stored} for a ledger of {size}"
        alarms = reused()
        assert len(alarms) == 1, alarms
        detail = alarms[0][1]
        assert detail["ticket_id"] == shared_id
        assert detail["sites"] == [SITE, SITE2]
        uses = conn.execute("SELECT ticket_id, count(*) FROM ticket_uses GROUP BY ticket_id"
                            " ORDER BY ticket_id").fetchall()
        honest = {parse_ticket(q).ticket.ticket_id for q in (t.valid1, t.valid2, early)}
        assert dict(uses) == {**{tid: 1 for tid in honest}, shared_id: 2}
        # Honest uses at either weighbridge of the mine are valid there: no invalid_ticket.
        invalid = conn.execute("SELECT site, detail FROM alarms WHERE code = 'invalid_ticket'"
                               ).fetchall()
        assert invalid == []
        # Gate 1's use of the shared ticket reaches gate 2 (which used it too, offline) as a use
        # at another gate of the mine, not as a conflicting second use "here".
        # (Gate 2 hears of three: `early`, valid1 and the shared ticket.)
        wait_until(lambda: gate2.deltas.count("used") + len(gate2.errors) >= 3, 30,
                   "gate 1's uses at gate 2")
        assert gate1.errors == [] and gate2.errors == []
    finally:
        stop_pub.set()
        if pub_thread is not None:
            pub_thread.join(10)
        for g in (gate1, gate2):
            g.close()
        if worker is not None:
            worker.halt()
        conn.close()
        broker.stop()
