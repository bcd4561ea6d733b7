"""The central API against a real PostgreSQL, fed through the real ingest path."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from central.alarms import sweep_offline
from central.api import create_app
from central.ingest.worker import Ingestor
from central.settings import RuleSettings
from ledger.checkpoint import open_checkpoint, verify_cosignature
from ledger.entry import Entry
from ledger.keys import SignerKey, VerifierKey
from ledger.merkle import verify_inclusion
from tests.central.api_support import Gate, api_settings, auth, token
from tests.support.pg import make_database


@dataclass
class World:
    url: str
    client: TestClient
    ingestor: Ingestor
    witness: SignerKey
    a: Gate  # enterprise A, two honest trucks and cheats
    b: Gate  # enterprise B
    tokens: dict[str, str]
    txns: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url, drop = make_database(migrated=False)
    tmp = tmp_path_factory.mktemp("api")
    app = create_app(api_settings(), url=url, sweep_offline_sites=False)
    try:
        with TestClient(app) as client, psycopg.connect(url) as conn:
            tokens = {r: token(url, r) for r in ("admin", "bureau", "checkpoint", "datapool")}
            tokens["ent_a"] = token(url, "enterprise", "企业甲")
            tokens["ent_b"] = token(url, "enterprise", "企业乙")
            a, b = Gate("site-a", tmp, "企业甲"), Gate("site-b", tmp, "企业乙")
            for gate in (a, b):
                r = client.post("/api/v1/sites", json=gate.enrol_body(),
                                headers=auth(tokens["admin"]))
                assert r.status_code == 201, r.text
            witness = SignerKey.generate("coalgate-central")
            ingestor = Ingestor(conn, witness)
            a.config(ticket_required=True)
            txns = {
                "honest": a.truck("陕K10001", coal_type="块煤"),
                "honest2": a.truck("陕K10002", tare=14000, gross=44000, coal_type="末煤"),
                "overload": a.truck("陕K10003", gross=52000, limit=49000, coal_type="块煤"),
                "escape": a.truck("陕K10004", released=False, ticket=None),
                "b_honest": b.truck("晋A20001", coal_type="块煤"),
            }
            a.append("alarm", {"code": "second_vehicle", "severity": "warning",
                               "txn": txns["honest2"], "detail": {"beam": "rear"}})
            for gate in (a, b):
                gate.push(ingestor)
                gate.status(ingestor)
            a.checkpoint(ingestor)
            yield World(url, client, ingestor, witness, a, b, tokens, txns)
            a.close()
            b.close()
    finally:
        drop()


def get(w: World, path: str, who: str = "bureau", **params: object):
    return w.client.get(f"/api/v1{path}", params=params, headers=auth(w.tokens[who]))


def alarm_codes(rows: list[dict]) -> set[tuple[str, str | None]]:
    return {(r["code"], r["txn"]) for r in rows}


def test_openapi_is_published_without_a_token(world: World):
    doc = world.client.get("/openapi.json").json()
    for path in ("/api/v1/sites", "/api/v1/weighings", "/api/v1/alarms",
                 "/api/v1/alarms/stream", "/api/v1/alarms/{alarm_id}/ack",
                 "/api/v1/sites/{site}/entries/{seq}/proof", "/api/v1/tonnage/daily"):
        assert path in doc["paths"], path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # No Swagger UI: it would pull its code from a CDN.
    assert world.client.get("/docs").status_code == 404


@pytest.mark.parametrize("path", ["/sites", "/weighings", "/alarms", "/tonnage/daily",
                                  "/sites/site-a/entries/0/proof"])
def test_no_or_bad_token_is_401(world: World, path: str):
    r = world.client.get(f"/api/v1{path}")
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    for bad in ("cgt_not-a-real-token", "Basic abc", "nonsense"):
        r = world.client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad


def test_revoked_token_is_401(world: World):
    admin = auth(world.tokens["admin"])
    made = world.client.post("/api/v1/tokens", json={"role": "datapool", "label": "feed"},
                             headers=admin).json()
    assert get(world, "/sites", **{}).status_code == 200
    headers = auth(made["token"])
    assert world.client.get("/api/v1/sites", headers=headers).status_code == 200
    assert world.client.delete(f"/api/v1/tokens/{made['id']}", headers=admin).status_code == 204
    assert world.client.get("/api/v1/sites", headers=headers).status_code == 401


@pytest.mark.parametrize(("who", "method", "path", "body"), [
    ("bureau", "post", "/sites", {"id": "x"}),
    ("enterprise", "post", "/sites", {"id": "x"}),
    ("datapool", "post", "/alarms/1/ack", None),
    ("checkpoint", "post", "/alarms/1/resolve", {"note": "x"}),
    ("enterprise", "post", "/alarms/1/ack", None),
    ("checkpoint", "get", "/alarms", None),
    ("datapool", "get", "/alarms/stream", None),
    ("bureau", "post", "/tokens", {"role": "admin"}),
])
def test_wrong_role_is_403(world: World, who: str, method: str, path: str, body):
    tok = world.tokens["ent_a" if who == "enterprise" else who]
    r = world.client.request(method, f"/api/v1{path}", json=body, headers=auth(tok))
    assert r.status_code == 403, r.text
    assert f"the {who} role may not do this" in r.json()["detail"]


def test_enrolment_validates_and_refuses_duplicates(world: World):
    admin = auth(world.tokens["admin"])
    dup = world.client.post("/api/v1/sites", json=world.a.enrol_body(), headers=admin)
    assert dup.status_code == 409 and "already enrolled" in dup.json()["detail"]
    bad = dict(world.a.enrol_body(), id="new site!", verifier_key="site+1234+AAAA",
               lat=123.0, extra=1)
    r = world.client.post("/api/v1/sites", json=bad, headers=admin)
    assert r.status_code == 422
    message = r.json()["message"]
    for fragment in ("body.id", "body.verifier_key: Value error, not a valid verifier key",
                     "body.lat", "body.extra"):
        assert fragment in message, message
    r = world.client.post("/api/v1/sites", content=b"{not json",
                          headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["message"]


def test_sites_show_status_and_verified_position(world: World):
    sites = {s["id"]: s for s in get(world, "/sites").json()}
    a = sites["site-a"]
    assert a["status"]["online"] is True and a["status"]["last_seen"] is not None
    assert a["status"]["verified_seq"] == world.a.store.size - 1
    assert a["status"]["checkpoint_size"] == world.a.store.size
    assert a["verifier_key"] == world.a.verifier_text
    assert a["status"]["open_alarms"] >= 3


def test_weighings_are_projected_and_searchable(world: World):
    page = get(world, "/weighings", site="site-a", limit=1000).json()
    # 4 trucks × (tare + gross) at site A.
    assert len(page["items"]) == 8 and page["next_before"] is None
    gross = [w for w in page["items"] if w["pass"] == "gross"]
    assert {w["plate"] for w in gross} == {"陕K10001", "陕K10002", "陕K10003", "陕K10004"}
    honest = next(w for w in gross if w["txn"] == world.txns["honest"])
    assert (honest["gross_kg"], honest["tare_kg"], honest["net_kg"]) == (48000, 15000, 33000)
    assert honest["coal_type"] == "块煤" and honest["decision"] == "release"
    by_plate = get(world, "/weighings", plate="陕K10003").json()["items"]
    assert {w["pass"] for w in by_plate} == {"tare", "gross"}
    # As written on the plate or typed in lower case it finds the same weighings (attack
    # review: a checkpoint asking for 陕K·10003 was told there were none).
    for typed in ("陕K·10003", "陕k 10003"):
        assert get(world, "/weighings", plate=typed).json()["items"] == by_plate, typed
    held = get(world, "/weighings", decision="hold", **{"pass": "gross"}).json()["items"]
    assert [w["plate"] for w in held] == ["陕K10004"]


def test_weighing_pages_follow_the_cursor(world: World):
    seen, before = [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"before": before} if before else {})}
        page = get(world, "/weighings", **params).json()
        seen += [(w["site"], w["seq"]) for w in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 10  # 8 at A, 2 at B
    r = get(world, "/weighings", before="garbage")
    assert r.status_code == 422 and "next_before" in r.json()["detail"]
    r = get(world, "/weighings", limit=0, **{"from": "yesterday"})
    assert r.status_code == 422
    assert "query.limit" in r.json()["message"] and "query.from" in r.json()["message"]


def test_alarms_are_derived_for_cheats_and_not_for_honest_trucks(world: World):
    rows = get(world, "/alarms", site="site-a", limit=1000).json()
    codes = alarm_codes(rows)
    assert ("overload", world.txns["overload"]) in codes
    assert ("escape", world.txns["escape"]) in codes
    # The previous truck's barrier went down and was never raised for this one: forced.
    assert ("barrier_forced", world.txns["escape"]) in codes
    assert ("no_ticket", world.txns["escape"]) in codes
    assert ("second_vehicle", world.txns["honest2"]) in codes  # mirrored from the gate
    honest = {world.txns["honest"], world.txns["b_honest"]}
    everything = get(world, "/alarms", limit=1000).json()
    # The fixture's ticket ids were never issued by this central: since issue 12 the central
    # re-checks every named ticket against its own table, so that (and only that) is flagged.
    flagged = [r for r in everything if r["txn"] in honest]
    assert flagged and all(r["code"] == "ticket_mismatch" and r["detail"]["failed"] == ["exists"]
                           for r in flagged), flagged
    overload = next(r for r in rows if r["code"] == "overload")
    assert overload["severity"] == "critical" and overload["detail"]["excess_kg"] == 3000


def test_enterprise_sees_only_its_own_sites(world: World):
    sites = get(world, "/sites", who="ent_b").json()
    assert [s["id"] for s in sites] == ["site-b"]
    weighings = get(world, "/weighings", who="ent_b", limit=1000).json()["items"]
    assert weighings and {w["site"] for w in weighings} == {"site-b"}
    # Only site-b's own alarm (its unissued fixture ticket, see the test above), none of A's.
    assert {a["site"] for a in get(world, "/alarms", who="ent_b", limit=1000).json()} \
        == {"site-b"}
    for path in ("/sites/site-a", "/sites/site-a/status", "/sites/site-a/entries/0/proof",
                 "/sites/no-such-site"):
        r = get(world, path, who="ent_b")
        assert r.status_code == 403 and "企业乙" in r.json()["detail"], path
    assert get(world, "/weighings", who="ent_b", site="site-a").status_code == 403
    assert get(world, "/alarms", who="ent_b", site="site-a").status_code == 403
    alarm_id = get(world, "/alarms", site="site-a").json()[0]["id"]
    assert get(world, f"/alarms/{alarm_id}", who="ent_b").status_code == 403
    assert get(world, f"/alarms/{alarm_id}", who="ent_a").status_code == 200
    tonnage = get(world, "/tonnage/daily", who="ent_b").json()["rows"]
    assert {r["site"] for r in tonnage} == {"site-b"}


def test_alarm_lifecycle(world: World):
    bureau = auth(world.tokens["bureau"])
    alarm = next(r for r in get(world, "/alarms", state="open", code="overload").json())
    path = f"/api/v1/alarms/{alarm['id']}"
    acked = world.client.post(f"{path}/ack", headers=bureau).json()
    assert acked["state"] == "acknowledged" and acked["ack_by"] == "bureau"
    assert acked["ack_at"] is not None
    again = world.client.post(f"{path}/ack", headers=bureau).json()
    assert again["ack_at"] == acked["ack_at"]
    empty = world.client.post(f"{path}/resolve", json={"note": "  "}, headers=bureau)
    assert empty.status_code == 422 and "body.note" in empty.json()["message"]
    done = world.client.post(f"{path}/resolve", json={"note": "已卸货复磅"}, headers=bureau).json()
    assert done["state"] == "resolved" and done["note"] == "已卸货复磅"
    assert done["resolved_by"] == "bureau"
    late = world.client.post(f"{path}/ack", headers=bureau)
    assert late.status_code == 409 and "resolved" in late.json()["detail"]
    assert world.client.post(f"{path}/resolve", json={"note": "x"},
                             headers=bureau).status_code == 409
    missing = world.client.post("/api/v1/alarms/999999/ack", headers=bureau)
    assert missing.status_code == 404
    states = {r["id"]: r["state"] for r in get(world, "/alarms", state="resolved").json()}
    assert states.get(alarm["id"]) == "resolved"
    assert get(world, "/alarms", state="closed").status_code == 422


def test_resolving_an_open_alarm_records_who_took_it(world: World):
    bureau = auth(world.tokens["bureau"])
    alarm = next(r for r in get(world, "/alarms", state="open", code="escape").json())
    done = world.client.post(f"/api/v1/alarms/{alarm['id']}/resolve",
                             json={"note": "司机已找到"}, headers=bureau).json()
    assert done["ack_by"] == "bureau" and done["ack_at"] is not None


def test_inclusion_proof_verifies_against_the_cosigned_checkpoint(world: World):
    seq = 3
    r = get(world, f"/sites/site-a/entries/{seq}/proof", who="checkpoint")
    assert r.status_code == 200, r.text
    p = r.json()
    leaf = p["leaf"].encode("utf-8")
    entry = Entry.from_leaf(leaf)
    assert (entry.site, entry.seq) == ("site-a", seq)
    key = VerifierKey.from_text(p["verifier_key"])
    assert key.verify(leaf, base64.b64decode(p["signature"]))
    leaf_hash = base64.b64decode(p["entry_hash"])
    assert leaf_hash == entry.entry_hash()
    root = base64.b64decode(p["root_hash"])
    verify_inclusion(seq, p["tree_size"], leaf_hash,
                     [base64.b64decode(h) for h in p["inclusion_proof"]], root)
    cp = open_checkpoint(p["checkpoint"], key)
    assert (cp.size, cp.root_hash) == (p["tree_size"], root)
    verify_cosignature(p["checkpoint"], world.witness.verifier)


def test_proof_of_an_entry_beyond_the_checkpoint_is_409(world: World):
    world.b.push(world.ingestor)  # site B has entries but never sent a checkpoint
    r = get(world, "/sites/site-b/entries/0/proof")
    assert r.status_code == 409 and "not yet in a cosigned checkpoint" in r.json()["detail"]
    assert get(world, "/sites/site-a/entries/99999/proof").status_code == 404


def test_tonnage_today_per_site_and_coal_type(world: World):
    body = get(world, "/tonnage/daily", who="datapool").json()
    assert body["timezone"] == "Asia/Shanghai"
    rows = {(r["site"], r["coal_type"]): (r["net_kg"], r["trucks"]) for r in body["rows"]}
    # Released gross passes only: the escaped (held) truck's load is not counted.
    assert rows == {
        ("site-a", "块煤"): (33000 + 37000, 2),
        ("site-a", "末煤"): (30000, 1),
        ("site-b", "块煤"): (33000, 1),
    }
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    assert get(world, "/tonnage/daily", day=yesterday).json()["rows"] == []


def test_site_offline_is_raised_and_resolved_by_the_sweep(world: World):
    rules = RuleSettings(offline_after_s=300)
    with psycopg.connect(world.url) as conn:
        # Both sites fell silent an hour ago.
        conn.execute("UPDATE site_state SET last_seen = now() - interval '1 hour'")
        conn.commit()
        now = datetime.now(UTC)
        assert sweep_offline(conn, now, rules) == 2
        assert sweep_offline(conn, now + timedelta(minutes=1), rules) == 0  # same silence
    offline = get(world, "/alarms", code="site_offline", state="open").json()
    assert {r["site"] for r in offline} == {"site-a", "site-b"}
    assert offline[0]["detail"]["silent_s"] >= 3600
    assert {s["id"]: s["status"]["online"] for s in get(world, "/sites").json()} == {
        "site-a": False, "site-b": False}
    world.a.status(world.ingestor)  # A is heard from again
    with psycopg.connect(world.url) as conn:
        sweep_offline(conn, datetime.now(UTC), rules)
    still = {r["site"] for r in get(world, "/alarms", code="site_offline", state="open").json()}
    assert still == {"site-b"}
    back = next(r for r in get(world, "/alarms", code="site_offline", state="resolved").json())
    assert back["site"] == "site-a" and back["note"] == "site back online"


def test_projection_is_idempotent(world: World):
    from central import projections

    before = get(world, "/alarms", limit=1000).json()
    entries = [se.entry for se in world.a.store.iter_entries(0)]
    with psycopg.connect(world.url) as conn, conn.cursor() as cur:
        projections.apply(cur, "site-a", entries)
    after = get(world, "/alarms", limit=1000).json()
    assert len(after) == len(before)
    assert len(get(world, "/weighings", site="site-a", limit=1000).json()["items"]) == 8


def test_weighings_are_reconciled_with_issued_tickets(world: World):
    """The projection hook also runs the e-ticket reconciliation: the coal type comes from the
    ticket when the gate did not write one, and a second use of a ticket is alarmed."""
    signer = SignerKey.generate("企业甲")
    with psycopg.connect(world.url) as conn:
        conn.execute(
            "INSERT INTO ticket_issuer_keys (kid, enterprise, verifier_key, signer_key,"
            " not_before) VALUES (%s, '企业甲', %s, %s, now() - interval '1 day')",
            (signer.key_id.hex(), signer.verifier.to_text(), signer.to_text()),
        )
        conn.execute(
            "INSERT INTO tickets (id, enterprise, site, plate, buyer, destination, coal_type,"
            " planned_net_kg, quota_period, valid_from, valid_to, issued_at, kid, qr,"
            " page_token, issued_by) VALUES ('MT-1', '企业甲', 'site-a', '陕K30001', 'b', 'd',"
            " '洗精煤', 33000, to_char(now(), 'YYYY-MM'), now() - interval '1 hour',"
            " now() + interval '1 day', now(), %s, 'CT1:x', 'page-1', 'test')",
            (signer.key_id.hex(),),
        )
    first = world.a.truck("陕K30001", ticket="MT-1", coal_type=None)
    again = world.a.truck("陕K30001", ticket="MT-1", coal_type=None)
    world.a.push(world.ingestor)
    gross = get(world, "/weighings", ticket_id="MT-1", **{"pass": "gross"}).json()["items"]
    assert {w["txn"]: w["coal_type"] for w in gross} == {first: "洗精煤", again: "洗精煤"}
    reused = get(world, "/alarms", code="ticket_reused").json()
    assert [r["txn"] for r in reused] == [again]
