"""GateTicketVerifier: every verdict, deltas from the central, and offline behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from central.tickets.rules import TicketUse, find_reuses
from edge_agent.tickets import (
    GateTicketVerifier,
    TicketDeltaError,
    TicketStoreError,
    from_scanner_text,
)
from ledger.base45 import b45encode
from ledger.cose import ALG_EDDSA, HEADER_ALG, HEADER_KID, sign1
from ledger.keys import SignerKey
from ledger.ticket import PREFIX, encode_claims, issue_ticket
from ledger.trust import TrustList
from tests.tickets.conftest import SITE, T0, typical_ticket

NOW = T0 + timedelta(hours=1)


@pytest.fixture
def trust_note(trust: TrustList, root_key: SignerKey) -> str:
    return trust.sign([root_key])


@pytest.fixture
def gate(tmp_path: Path, root_key: SignerKey, trust_note: str) -> Iterator[GateTicketVerifier]:
    g = GateTicketVerifier(SITE, tmp_path / "tickets.db", trust_roots=[root_key.verifier])
    g.apply_delta({"type": "trust", "note": trust_note}, now=T0)
    yield g
    g.close()


def test_valid_ticket(gate: GateTicketVerifier, ticket_text: str) -> None:
    result = gate.check(ticket_text, plate="陕K·8A3B2", now=NOW)
    assert result.ok and result.reason == "ok"
    assert result.ticket == typical_ticket()
    assert "票据有效" in result.message and "ticket valid" in result.message


def test_plate_not_read_is_said(gate: GateTicketVerifier, ticket_text: str) -> None:
    result = gate.check(ticket_text, plate=None, now=NOW)
    assert result.ok and "not compared" in result.message


@pytest.mark.parametrize(
    ("changes", "plate", "now", "reason"),
    [
        ({}, "陕K8A3B3", NOW, "wrong_plate"),
        ({"site": "S61082102"}, "陕K8A3B2", NOW, "wrong_site"),
        ({}, "陕K8A3B2", T0 + timedelta(hours=48), "expired"),
        ({}, "陕K8A3B2", T0 - timedelta(minutes=1), "not_yet_valid"),
    ],
)
def test_refusals(gate: GateTicketVerifier, issuer_key: SignerKey, changes: dict, plate: str,
                  now, reason: str) -> None:
    text = issue_ticket(typical_ticket(**changes), issuer_key)
    result = gate.check(text, plate=plate, now=now)
    assert not result.ok and result.reason == reason
    assert result.ticket is not None and result.message


def test_malformed_forged_and_unknown(gate: GateTicketVerifier, trust: TrustList) -> None:
    assert gate.check("https://example.com/", plate=None, now=NOW).reason == "malformed"
    assert gate.check("CT1:ZZZZ", plate=None, now=NOW).reason == "malformed"
    stranger = SignerKey("E610821001", bytes(range(7, 39)))
    text = issue_ticket(typical_ticket(), stranger)
    assert gate.check(text, plate=None, now=NOW).reason == "unknown_issuer"
    forged = sign1(encode_claims(typical_ticket(planned_net_kg=99000)), stranger.sign,
                   protected={HEADER_ALG: ALG_EDDSA, HEADER_KID: trust.keys[0].key.key_id})
    result = gate.check(PREFIX + b45encode(forged), plate="陕K8A3B2", now=NOW)
    assert result.reason == "bad_signature" and not result.ok


def test_revoked_and_used(gate: GateTicketVerifier, ticket_text: str) -> None:
    gate.apply_delta({"type": "revoked", "ticket_id": "T2611050123",
                      "at": "2026-11-05T08:30:00Z", "reason": "作废 voided by sales office"},
                     now=NOW)
    result = gate.check(ticket_text, plate="陕K8A3B2", now=NOW)
    assert result.reason == "revoked" and "voided" in result.message


def test_used_here_then_refused(gate: GateTicketVerifier, ticket_text: str) -> None:
    assert gate.check(ticket_text, plate="陕K8A3B2", now=NOW).ok
    gate.mark_used("T2611050123", seq=41, now=NOW)
    gate.mark_used("T2611050123", seq=41, now=NOW)  # idempotent
    result = gate.check(ticket_text, plate="陕K8A3B2", now=NOW)
    assert result.reason == "used" and "seq 41" in result.message
    with pytest.raises(TicketStoreError, match="already used"):
        gate.mark_used("T2611050123", seq=42, now=NOW)


def test_used_elsewhere_from_central(gate: GateTicketVerifier, ticket_text: str) -> None:
    gate.apply_delta({"type": "used", "ticket_id": "T2611050123", "site": "S61082109",
                      "seq": 7, "at": "2026-11-05T08:10:00Z"}, now=NOW)
    result = gate.check(ticket_text, plate="陕K8A3B2", now=NOW)
    assert result.reason == "used" and "S61082109" in result.message


def test_issued_delta_lookup_by_plate(gate: GateTicketVerifier, ticket_text: str,
                                      issuer_key: SignerKey) -> None:
    gate.apply_delta({"type": "issued", "ticket": ticket_text}, now=NOW)
    other_site = issue_ticket(typical_ticket(ticket_id="T2", site="S9"), issuer_key)
    gate.apply_delta({"type": "issued", "ticket": other_site}, now=NOW)
    assert gate.tickets_for_plate("陕K 8A3B2", now=NOW) == [ticket_text]
    assert gate.tickets_for_plate("陕K8A3B2", now=T0 + timedelta(days=3)) == []


@pytest.mark.parametrize(
    "delta",
    [
        {"type": "nonsense"},
        {"type": "revoked"},
        {"type": "revoked", "ticket_id": "T1", "at": "yesterday", "reason": "x"},
        {"type": "used", "ticket_id": "T1", "site": "S1", "seq": "7", "at": "2026-11-05T08:10:00Z"},
        {"type": "issued", "ticket": "CT1:BB8"},
        {"type": "trust", "note": "not a note"},
    ],
)
def test_bad_deltas_rejected(gate: GateTicketVerifier, delta: dict) -> None:
    with pytest.raises(TicketDeltaError):
        gate.apply_delta(delta, now=NOW)


def test_trust_rollback_and_wrong_root(gate: GateTicketVerifier, trust: TrustList,
                                       root_key: SignerKey, issuer_key: SignerKey) -> None:
    newer = trust.remove_key(issuer_key.key_id, now=NOW)
    gate.apply_delta({"type": "trust", "note": newer.sign([root_key])}, now=NOW)
    with pytest.raises(TicketDeltaError, match="rollback"):
        gate.apply_delta({"type": "trust", "note": trust.sign([root_key])}, now=NOW)
    evil = SignerKey("bureau-root", bytes(range(9, 41)))
    with pytest.raises(TicketDeltaError):
        gate.apply_delta({"type": "trust", "note": trust.add_key(
            "E9", evil.verifier, T0, now=NOW).add_key("E8", SignerKey("x", bytes(32)).verifier,
                                                      T0, now=NOW).sign([evil])}, now=NOW)


def test_no_trust_list_means_unknown_issuer(tmp_path: Path, ticket_text: str) -> None:
    gate = GateTicketVerifier(SITE, tmp_path / "t.db")
    result = gate.check(ticket_text, plate=None, now=NOW)
    assert result.reason == "unknown_issuer" and "trust list" in result.message
    gate.close()


def test_state_survives_restart(tmp_path: Path, root_key: SignerKey, trust_note: str,
                                ticket_text: str) -> None:
    path = tmp_path / "tickets.db"
    gate = GateTicketVerifier(SITE, path, trust_roots=[root_key.verifier])
    gate.apply_delta({"type": "trust", "note": trust_note}, now=T0)
    gate.apply_delta({"type": "revoked", "ticket_id": "T-REVOKED", "at": "2026-11-05T08:00:00Z",
                      "reason": "x"}, now=T0)
    gate.mark_used("T2611050123", seq=3, now=NOW)
    gate.close()
    for roots in ([root_key.verifier], []):
        again = GateTicketVerifier(SITE, path, trust_roots=roots)
        assert again.check(ticket_text, plate=None, now=NOW).reason == "used"
        assert again.store.revocation("T-REVOKED") is not None
        again.close()


def test_scanner_text_cleanup(ticket_text: str) -> None:
    assert from_scanner_text(ticket_text + "\r\n") == ticket_text
    assert from_scanner_text(("]Q1" + ticket_text + "\n").encode()) == ticket_text
    assert from_scanner_text(ticket_text.lower()) == ticket_text
    assert from_scanner_text("hello") == "hello"


def test_offline_outage_two_gates_then_reconciliation(
    tmp_path: Path, root_key: SignerKey, trust_note: str, issuer_key: SignerKey
) -> None:
    """Issue 7 "must hold": no network at either gate during the outage. Both gates learnt
    the trust list and a revocation before it; during it they accept valid tickets and refuse
    revoked, expired, wrong-plate and forged ones; afterwards the central's reconciliation
    flags the ticket a driver used at both gates."""
    gates = {}
    for site in ("S61082101", "S61082102"):
        g = GateTicketVerifier(site, tmp_path / f"{site}.db", trust_roots=[root_key.verifier])
        g.apply_delta({"type": "trust", "note": trust_note}, now=T0)
        g.apply_delta({"type": "revoked", "ticket_id": "T-VOID", "at": "2026-11-05T08:05:00Z",
                       "reason": "voided"}, now=T0)
        gates[site] = g
    # --- outage: only local state from here on ---
    a, b = gates["S61082101"], gates["S61082102"]
    shared = issue_ticket(typical_ticket(ticket_id="T-SHARED", site="S61082101"), issuer_key)
    copy_for_b = issue_ticket(typical_ticket(ticket_id="T-SHARED", site="S61082102"), issuer_key)
    assert a.check(shared, plate="陕K8A3B2", now=NOW).ok
    a.mark_used("T-SHARED", seq=10, now=NOW)
    assert b.check(copy_for_b, plate="陕K8A3B2", now=NOW).ok  # b cannot know yet
    b.mark_used("T-SHARED", seq=4, now=NOW + timedelta(minutes=30))
    revoked = issue_ticket(typical_ticket(ticket_id="T-VOID"), issuer_key)
    assert a.check(revoked, plate="陕K8A3B2", now=NOW).reason == "revoked"
    assert a.check(issue_ticket(typical_ticket(ticket_id="T-OLD"), issuer_key),
                   plate="陕K8A3B2", now=T0 + timedelta(days=3)).reason == "expired"
    assert a.check(issue_ticket(typical_ticket(ticket_id="T-P"), issuer_key),
                   plate="晋A12345", now=NOW).reason == "wrong_plate"
    forged = shared[:-6] + ("A" if shared[-6] != "A" else "B") + shared[-5:]
    assert not a.check(forged, plate="陕K8A3B2", now=NOW).ok
    # --- back online: uses reach the central ---
    uses = [TicketUse("T-SHARED", "S61082101", 10, NOW),
            TicketUse("T-SHARED", "S61082102", 4, NOW + timedelta(minutes=30))]
    alarms = find_reuses(uses)
    assert [al.code for al in alarms] == ["ticket_reused"]
    assert alarms[0].detail["sites"] == ["S61082101", "S61082102"]
    for g in gates.values():
        g.close()


def test_bulk_revocations(gate: GateTicketVerifier, ticket_text: str) -> None:
    gate.store.revoke_many([(f"R{i}", T0, "voided") for i in range(500)]
                           + [("T2611050123", T0, "bulk")])
    assert gate.check(ticket_text, plate=None, now=NOW).reason == "revoked"
    assert gate.store.revocation("R499") is not None

