"""Central e-tickets through the real API, real PostgreSQL and the real ingest path:
issuance, quota policy, issuer keys and the trust list, voiding and expiry, reconciliation
(reuse, no ticket, over-production), the driver page and the public slip check."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from central.ingest.worker import Ingestor
from central.tickets.settings import TicketSettings
from ledger.keys import SignerKey
from ledger.ticket import default_quota_period, verify_ticket
from ledger.ticket_errors import UnknownIssuerError
from ledger.trust import TrustList
from tests.support.pg import make_database
from tests.tickets.central_support import (
    ENT_A,
    ENT_B,
    Gate,
    alarms,
    auth,
    make_ingestor,
    make_token,
    ticket_app,
)

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
WITNESS = SignerKey("coalgate-central", bytes(range(50, 82)))


class Clock:
    """The central's clock for tickets: real time, moved forward by tests (expiry)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class World:
    url: str
    client: TestClient
    conn: psycopg.Connection[Any]
    ingestor: Ingestor
    clock: Clock
    tokens: dict[str, str]
    a: Gate  # ENT_A, where tickets are valid
    a2: Gate  # ENT_A's second weighbridge
    b: Gate  # ENT_B


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url, drop = make_database()
    tmp = tmp_path_factory.mktemp("central_tickets")
    clock = Clock()
    app = ticket_app(url, TicketSettings(root_key=ROOT, clock=clock, witness=WITNESS.verifier))
    try:
        with TestClient(app) as client, psycopg.connect(url, autocommit=True) as conn:
            a, a2, b = Gate("S61082101", tmp, ENT_A), Gate("S61082102", tmp, ENT_A), \
                Gate("S61082201", tmp, ENT_B)
            for gate in (a, a2, b):
                gate.enrol(conn)
            tokens = {r: make_token(url, r) for r in ("admin", "bureau", "checkpoint")}
            tokens["a"] = make_token(url, "enterprise", ENT_A)
            tokens["b"] = make_token(url, "enterprise", ENT_B)
            ingest_conn = psycopg.connect(url)
            ingestor = make_ingestor(ingest_conn, WITNESS)
            world = World(url, client, conn, ingestor, clock, tokens, a, a2, b)
            for ent in (ENT_A, ENT_B):
                r = client.post("/api/v1/tickets/issuer-keys", json={"enterprise": ent},
                                headers=auth(tokens["bureau"]))
                assert r.status_code == 201, r.text
            yield world
            ingest_conn.close()
            for gate in (a, a2, b):
                gate.close()
    finally:
        drop()


def issue(w: World, who: str = "a", **fields: Any) -> Any:
    body = {"site": w.a.site, "plate": "陕K8A3B2", "buyer": "鑫源兰炭",
            "destination": "保德县", "coal_type": "洗混煤", "planned_net_kg": 34500}
    body.update(fields)
    return w.client.post("/api/v1/tickets", json=body, headers=auth(w.tokens[who]))


def trust(w: World) -> TrustList:
    r = w.client.get("/api/v1/tickets/trust-list")  # public: no token
    assert r.status_code == 200, r.text
    return TrustList.open(r.text, [ROOT.verifier])


def period() -> str:
    return default_quota_period(datetime.now(UTC))


# -- issuance, keys, trust list ---------------------------------------------------------------

def test_issued_ticket_verifies_against_the_published_trust_list(w: World) -> None:
    r = issue(w, buyer_name="府谷县鑫源兰炭有限公司")
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["state"] == "valid" and t["enterprise"] == ENT_A and t["quota_period"] == period()
    ticket = verify_ticket(t["qr"], trust(w), now=datetime.now(UTC))
    assert (ticket.ticket_id, ticket.site, ticket.plate, ticket.planned_net_kg) == (
        t["ticket_id"], w.a.site, "陕K8A3B2", 34500)
    assert ticket.valid_to - ticket.valid_from == timedelta(hours=48)
    assert t["page_url"].endswith("/t/" + t["page_token"]) and len(t["page_token"]) >= 22


def test_enterprise_issues_only_for_its_own_sites(w: World) -> None:
    r = issue(w, "a", site=w.b.site)
    assert r.status_code == 403 and ENT_A in r.json()["detail"]
    r = issue(w, "a", enterprise=ENT_B)
    assert r.status_code == 403
    assert issue(w, "bureau").status_code == 403  # the bureau supervises, it does not sell
    assert issue(w, "admin").status_code == 422  # admin must name the enterprise
    assert issue(w, "admin", enterprise=ENT_A).status_code == 201


def test_bad_fields_are_refused_with_the_field_named(w: World) -> None:
    r = issue(w, planned_net_kg=0)
    assert r.status_code == 422 and "planned_net_kg" in r.json()["message"]
    r = issue(w, buyer="府谷县鑫源兰炭有限公司" * 3)  # too long for the QR budget
    assert r.status_code == 422
    r = issue(w, valid_to=(datetime.now(UTC) + timedelta(days=40)).isoformat())
    assert r.status_code == 422 and "31 days" in r.json()["detail"]


def test_ticket_plates_are_normalised_or_refused(w: World) -> None:
    """Issue 12 (plates normalised or refused on every input path); the attack review found
    the ticket API storing and signing '陕k·7x215', full-width 'ＡＢ１２３' and '陕K7X2I5'
    (I is never on a plate) as given."""
    r = issue(w, plate="陕k·7x215")
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["plate"] == "陕K7X215"
    assert verify_ticket(t["qr"], trust(w), now=datetime.now(UTC)).plate == "陕K7X215"
    listed = w.client.get("/api/v1/tickets", params={"plate": "陕K·7X215"},
                          headers=auth(w.tokens["a"])).json()["tickets"]
    assert [x["ticket_id"] for x in listed] == [t["ticket_id"]]
    for bad in ("ＡＢ１２３", "陕K7X2I5", "陕K\u200b7X215", "陕K"):
        r = issue(w, plate=bad)
        assert r.status_code == 422, (bad, r.text)
        assert "plate" in r.text and "陕K" in r.text, r.text  # says what a plate looks like


def test_only_the_bureau_manages_keys_and_enterprise_sees_its_own(w: World) -> None:
    r = w.client.post("/api/v1/tickets/issuer-keys", json={"enterprise": ENT_A},
                      headers=auth(w.tokens["a"]))
    assert r.status_code == 403
    r = w.client.get("/api/v1/tickets/issuer-keys", headers=auth(w.tokens["a"]))
    assert r.status_code == 200 and {k["enterprise"] for k in r.json()["keys"]} == {ENT_A}
    r = w.client.post("/api/v1/tickets/issuer-keys", json={"enterprise": "榆林某煤业"},
                      headers=auth(w.tokens["bureau"]))
    assert r.status_code == 422 and "issuer id" in r.json()["detail"]


def test_rotation_keeps_old_tickets_valid_and_removal_voids_them(
    w: World, tmp_path: Path
) -> None:
    ent = "E610821005"  # its own enterprise: the clock moves forward for the rotation
    gate = Gate("S61082501", tmp_path, ent)
    gate.enrol(w.conn)
    w.tokens[ent] = make_token(w.url, "enterprise", ent)
    assert w.client.post("/api/v1/tickets/issuer-keys", json={"enterprise": ent},
                         headers=auth(w.tokens["bureau"])).status_code == 201
    old = issue(w, ent, site=gate.site).json()
    serial_before = trust(w).serial
    w.clock.offset = timedelta(seconds=2)  # rotate after the old key's first second
    try:
        r = w.client.post("/api/v1/tickets/issuer-keys", json={"enterprise": ent},
                          headers=auth(w.tokens["bureau"]))
        assert r.status_code == 201
        new_kid = r.json()["kid"]
        listed = trust(w)
        assert listed.serial == serial_before + 1
        keys_b = [k for k in listed.keys if k.issuer == ent]
        assert len(keys_b) == 2 and sum(k.not_after is None for k in keys_b) == 1
        retired = next(k for k in keys_b if k.not_after is not None)
        assert retired.key.key_id.hex() == old["kid"]
        # The ticket signed before the rotation still verifies; new ones use the new key.
        verify_ticket(old["qr"], listed, now=w.clock())
        new = issue(w, ent, site=gate.site).json()
        assert new["kid"] == new_kid != old["kid"]
        # Compromise: remove the old key; its tickets fail at once, the new key's still verify.
        r = w.client.delete(f"/api/v1/tickets/issuer-keys/{old['kid']}",
                            headers=auth(w.tokens["bureau"]))
        assert r.status_code == 200 and r.json()["removed_at"]
        with pytest.raises(UnknownIssuerError):
            verify_ticket(old["qr"], trust(w), now=w.clock())
        verify_ticket(new["qr"], trust(w), now=w.clock())
    finally:
        w.clock.offset = timedelta(0)
        gate.close()
    r = w.client.delete("/api/v1/tickets/issuer-keys/00000000", headers=auth(w.tokens["bureau"]))
    assert r.status_code == 404


def test_no_issuer_key_is_a_clear_refusal(w: World, tmp_path: Path) -> None:
    gate = Gate("S61082301", tmp_path, "E610821003")
    gate.enrol(w.conn)
    tok = make_token(w.url, "enterprise", "E610821003")
    r = w.client.post("/api/v1/tickets", headers=auth(tok), json={
        "site": gate.site, "plate": "陕K11111", "buyer": "x", "destination": "y",
        "coal_type": "块煤", "planned_net_kg": 30000})
    assert r.status_code == 409 and "issuer-keys" in r.json()["detail"]
    gate.close()


# -- quota policy ---------------------------------------------------------------------------

def test_enforce_refuses_beyond_remaining_quota_and_void_releases_it(
    w: World, tmp_path: Path
) -> None:
    e = "E610821004"
    gate = Gate("S61082401", tmp_path, e)
    gate.enrol(w.conn)
    tok = make_token(w.url, "enterprise", e)
    bureau = auth(w.tokens["bureau"])
    assert w.client.post("/api/v1/tickets/issuer-keys", json={"enterprise": e},
                         headers=bureau).status_code == 201
    r = w.client.put(f"/api/v1/tickets/quota/{e}/{period()}", json={"capacity_kg": 100_000},
                     headers=bureau)
    assert r.status_code == 200 and r.json()["remaining_kg"] == 100_000
    assert w.client.put("/api/v1/tickets/policy", json={"scope": e, "policy": "enforce"},
                        headers=bureau).status_code == 200
    assert w.client.put(f"/api/v1/tickets/quota/{e}/{period()}", json={"capacity_kg": 1},
                        headers=auth(tok)).status_code == 403

    def sell(kg: int) -> Any:
        return w.client.post("/api/v1/tickets", headers=auth(tok), json={
            "site": gate.site, "plate": "陕K22222", "buyer": "甲", "destination": "乙",
            "coal_type": "块煤", "planned_net_kg": kg})

    first = sell(60_000)
    assert first.status_code == 201, first.text
    refused = sell(50_000)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "剩余 40.0 t" in detail["message"] and "Refused" in detail["message"]
    assert detail["quota"]["reserved_kg"] == 60_000
    assert sell(40_000).status_code == 201  # exactly what is left
    assert sell(1).status_code == 409
    r = w.client.post(f"/api/v1/tickets/{first.json()['ticket_id']}/void",
                      json={"reason": "订单取消"}, headers=auth(tok))
    assert r.status_code == 200 and r.json()["state"] == "voided"
    assert sell(50_000).status_code == 201  # the void released 60 t of reservation
    # Monitor (the default elsewhere) issues past capacity.
    assert w.client.put(f"/api/v1/tickets/quota/{ENT_A}/{period()}", json={"capacity_kg": 1000},
                        headers=bureau).status_code == 200
    assert issue(w).status_code == 201
    gate.close()


def test_enforce_without_capacity_refuses_with_instructions(w: World) -> None:
    bureau = auth(w.tokens["bureau"])
    assert w.client.put("/api/v1/tickets/policy", json={"scope": ENT_A, "policy": "enforce"},
                        headers=bureau).status_code == 200
    try:
        r = issue(w, quota_period="2031-01")
        assert r.status_code == 409
        assert "no approved capacity" in r.json()["detail"]["message"]
    finally:
        w.client.put("/api/v1/tickets/policy", json={"scope": ENT_A, "policy": "monitor"},
                     headers=bureau)
    policies = w.client.get("/api/v1/tickets/policy", headers=bureau).json()["policies"]
    assert {"scope": "*", "policy": "monitor"}.items() <= policies[0].items()


# -- reconciliation ---------------------------------------------------------------------------

def test_over_production_is_raised_once_when_actual_net_passes_capacity(w: World) -> None:
    bureau = auth(w.tokens["bureau"])
    assert w.client.put(f"/api/v1/tickets/quota/{ENT_B}/{period()}",
                        json={"capacity_kg": 50_000}, headers=bureau).status_code == 200
    r1 = issue(w, "b", site=w.b.site, planned_net_kg=20_000)
    assert r1.status_code == 201, r1.text
    t1 = r1.json()
    t2 = issue(w, "b", site=w.b.site, planned_net_kg=20_000).json()
    # Capacity is consumed by the actual net, not the planned 20 t.
    w.b.load(t1["plate"], t1["ticket_id"], net=30_000)
    w.b.push(w.ingestor)
    assert not [a for a in alarms(w.conn, "over_production") if a[3]["enterprise"] == ENT_B]
    w.b.load(t2["plate"], t2["ticket_id"], net=30_000)
    w.b.load("陕K33333", None, net=5_000)  # no ticket: still coal produced
    w.b.push(w.ingestor)
    w.b.resend_all(w.ingestor)  # a resend consumes nothing twice
    over = [a for a in alarms(w.conn, "over_production") if a[3]["enterprise"] == ENT_B]
    assert len(over) == 1
    assert over[0][3]["consumed_kg"] == 60_000 and over[0][3]["over_kg"] == 10_000
    q = w.client.get("/api/v1/tickets/quota", headers=bureau).json()
    row = next(m for m in q["mines"] if m["enterprise"] == ENT_B)
    assert (row["consumed_kg"], row["remaining_kg"], row["over"], row["over_kg"]) == (
        65_000, -15_000, True, 15_000)
    assert row["used"] == 2 and row["issued"] >= 2
    mine = w.client.get("/api/v1/tickets/quota", headers=auth(w.tokens["a"])).json()["mines"]
    assert [m["enterprise"] for m in mine] == [ENT_A]  # an enterprise sees only itself


def test_a_ticket_used_at_two_gates_raises_ticket_reused(w: World) -> None:
    t = issue(w).json()
    w.a.load(t["plate"], t["ticket_id"])
    w.a.push(w.ingestor)
    assert w.client.get(f"/api/v1/tickets/{t['ticket_id']}",
                        headers=auth(w.tokens["a"])).json()["state"] == "used"
    assert not [a for a in alarms(w.conn, "ticket_reused") if a[3]["ticket_id"] == t["ticket_id"]]
    w.a2.load(t["plate"], t["ticket_id"])  # the same ticket at the mine's other gate
    w.a2.push(w.ingestor)
    reused = [a for a in alarms(w.conn, "ticket_reused") if a[3]["ticket_id"] == t["ticket_id"]]
    assert len(reused) == 1
    site, _, severity, detail = reused[0]
    assert (site, severity) == (w.a2.site, "critical")
    assert detail["sites"] == sorted([w.a.site, w.a2.site])
    wrong_site = [a for a in alarms(w.conn, "invalid_ticket") if a[3].get("ticket_id")
                  == t["ticket_id"]]
    assert wrong_site and wrong_site[0][3]["result"] == "wrong_site"
    # The ticket's own gate is told about the use elsewhere.
    used = w.conn.execute(
        "SELECT payload FROM ticket_outbox WHERE site = %s AND payload->>'type' = 'used'"
        " AND payload->>'ticket_id' = %s", (w.a.site, t["ticket_id"])).fetchall()
    assert len(used) == 1 and used[0][0]["site"] == w.a2.site
    # Twice at one gate is a reuse too; the resend of the same seq is not.
    w.a.load(t["plate"], t["ticket_id"])
    w.a.push(w.ingestor)
    w.a.resend_all(w.ingestor)
    reused = [a for a in alarms(w.conn, "ticket_reused") if a[3]["ticket_id"] == t["ticket_id"]]
    assert len(reused) == 2 and len(reused[1][3]["uses"]) == 3
    assert w.client.post(f"/api/v1/tickets/{t['ticket_id']}/void", json={"reason": "x"},
                         headers=auth(w.tokens["a"])).status_code == 409  # used: cannot void


def test_a_weighing_without_ticket_raises_no_ticket_once(w: World) -> None:
    w.a2.config(ticket_required=True)
    seq = w.a2.load("陕K44444", None)
    w.a2.config(ticket_required=False)
    w.a2.load("陕K55555", None)
    w.a2.push(w.ingestor)
    rows = [a for a in alarms(w.conn, "no_ticket") if a[0] == w.a2.site]
    # central.rules derives the same fact: both land on one alarm (same dedup key)
    assert [(r[1], r[3]["plate"]) for r in rows] == [(seq, "陕K44444")]


def test_use_of_a_ticket_voided_before_the_weighing_is_flagged(w: World) -> None:
    t = issue(w).json()
    assert w.client.post(f"/api/v1/tickets/{t['ticket_id']}/void", json={"reason": "作废"},
                         headers=auth(w.tokens["a"])).status_code == 200
    again = w.client.post(f"/api/v1/tickets/{t['ticket_id']}/void", json={"reason": "x"},
                          headers=auth(w.tokens["a"]))
    assert again.status_code == 409 and "already voided" in again.json()["detail"]
    assert w.client.post(f"/api/v1/tickets/{t['ticket_id']}/void", json={"reason": "x"},
                         headers=auth(w.tokens["b"])).status_code == 403
    w.a.load(t["plate"], t["ticket_id"])  # a gate that never got the revocation
    w.a.push(w.ingestor)
    flagged = [a for a in alarms(w.conn, "invalid_ticket")
               if a[3].get("ticket_id") == t["ticket_id"]]
    assert [a[3]["result"] for a in flagged] == ["revoked"]


def test_expiry_changes_state_and_releases_reservation(w: World) -> None:
    t = issue(w, valid_to=(datetime.now(UTC) + timedelta(hours=1)).isoformat()).json()
    listed = w.client.get("/api/v1/tickets", params={"state": "valid"},
                          headers=auth(w.tokens["a"])).json()["tickets"]
    assert t["ticket_id"] in {x["ticket_id"] for x in listed}
    w.clock.offset = timedelta(hours=2)
    try:
        got = w.client.get(f"/api/v1/tickets/{t['ticket_id']}", headers=auth(w.tokens["a"]))
        assert got.json()["state"] == "expired"
        expired = w.client.get("/api/v1/tickets", params={"state": "expired"},
                               headers=auth(w.tokens["a"])).json()["tickets"]
        assert t["ticket_id"] in {x["ticket_id"] for x in expired}
    finally:
        w.clock.offset = timedelta(0)
    other = w.client.get("/api/v1/tickets", headers=auth(w.tokens["b"])).json()["tickets"]
    assert all(x["enterprise"] == ENT_B for x in other) and other
    cp = w.client.get("/api/v1/tickets", params={"plate": "陕K8A3B2"},
                      headers=auth(w.tokens["checkpoint"]))
    assert cp.status_code == 200 and cp.json()["tickets"]  # police: is this truck's ticket valid?


# -- driver page and slip check ---------------------------------------------------------------

def _decode_png(data: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(data)).convert("L"))
    assert results, "no QR code found in the PNG"
    return str(results[0].text)


def test_driver_page_qr_downloads_and_signed_slip_after_weighing(w: World) -> None:
    t = issue(w, plate="陕K66666", destination_name="山西省忻州市保德县").json()
    page = w.client.get(f"/t/{t['page_token']}")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "陕K66666" in page.text and "山西省忻州市保德县" in page.text and "有效" in page.text
    assert "<svg" in page.text and "装载证明" not in page.text
    english = w.client.get(f"/t/{t['page_token']}", params={"lang": "en"}).text
    assert "Valid" in english and "Plate" in english
    png = w.client.get(f"/t/{t['page_token']}/qr.png")
    assert png.headers["content-type"] == "image/png"
    assert _decode_png(png.content) == t["qr"]
    assert w.client.get(f"/t/{t['page_token']}/qr.svg").content.lstrip().startswith(b"<?xml")
    assert w.client.get(f"/t/{t['page_token']}/qr.pdf").content.startswith(b"%PDF")
    assert w.client.get("/t/not-a-real-token").status_code == 404

    seq = w.a.load("陕K66666", t["ticket_id"], net=34_120, tare=15_380, axles=6)
    w.a.push(w.ingestor)
    w.a.checkpoint(w.ingestor)
    page = w.client.get(f"/t/{t['page_token']}").text
    assert "装载证明" in page and "34,120 kg" in page and "49,500 kg" in page
    assert "已使用" in page
    href = page.split(f'data-slip="{w.a.site}/{seq}"')[1].split('href="')[1].split('"')[0]
    path = href.split("testserver", 1)[-1]
    check = w.client.get(path, params={"format": "json"})
    assert check.status_code == 200, check.text
    body = check.json()
    assert body["verified"] is True and set(body["checks"]) == {
        "leaf_hash", "signature", "inclusion", "checkpoint", "witness"}
    assert body["proof"]["seq"] == seq and '"net_kg":34120' in body["proof"]["leaf"]
    html_check = w.client.get(path)
    assert "验证通过" in html_check.text
    # Checked against another witness key, the cosignature fails and so does the verdict.
    app_state = w.client.app.state  # type: ignore[attr-defined]
    settings = app_state.tickets
    app_state.tickets = replace(settings, witness=SignerKey.generate("impostor").verifier)
    try:
        other = w.client.get(path, params={"format": "json"}).json()
        assert other["verified"] is False and other["checks"]["witness"][0] is False
        assert "验证失败" in w.client.get(path).text
    finally:
        app_state.tickets = settings
    # An altered hash (a forged slip) resolves to nothing.
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert w.client.get(forged).status_code == 404
    # The gate's printed code resolves to the same check.
    code = "CGW1:" + path.split("/v/", 1)[1]
    r = w.client.get("/v", params={"q": code}, follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == path
