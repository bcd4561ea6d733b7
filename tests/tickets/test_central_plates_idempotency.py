"""Plates and idempotent issuance at the central, through the real API server (uvicorn on a
socket) and real PostgreSQL: every plate the API takes is normalised with the gate's grammar or
refused with a bilingual 422 naming the field; ``?plate=`` filters normalise too; a ticket POST
with an Idempotency-Key issues one ticket however often it arrives (also all at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from central.tickets import issuers, service
from central.tickets.errors import TicketInputError
from central.tickets.settings import TicketSettings
from ledger.keys import SignerKey
from ledger.ticket import parse_ticket
from tests.support.api_server import Server
from tests.support.pg import make_database
from tests.tickets.central_support import ENT_A, ENT_B, Gate, make_ingestor, make_token, ticket_app

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
TRIP = {"site": "S61082101", "buyer": "鑫源兰炭", "destination": "保德县", "coal_type": "洗混煤",
        "planned_net_kg": 34500}


@dataclass
class Central:
    url: str
    base: str
    tokens: dict[str, str]
    gate: Gate

    def call(self, method: str, path: str, who: str = "a", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.base}/api/v1{path}", headers=headers,
                             timeout=60, **kw)

    def count(self, sql: str, *args: Any) -> int:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql, args).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    url, drop = make_database()
    tmp = tmp_path_factory.mktemp("plates_api")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            gate = Gate("S61082101", tmp, ENT_A)
            gate.enrol(conn)
            Gate("S61082201", tmp, ENT_B).enrol(conn)
            for ent in (ENT_A, ENT_B):
                issuers.create_issuer_key(conn, ent, ROOT, now=datetime.now(UTC))
        tokens = {"a": make_token(url, "enterprise", ENT_A),
                  "b": make_token(url, "enterprise", ENT_B), "bureau": make_token(url, "bureau")}
        with Server(ticket_app(url, TicketSettings(root_key=ROOT))) as server:
            try:
                yield Central(url, server.base, tokens, gate)
            finally:
                gate.close()
    finally:
        drop()


def _plate_error(resp: httpx.Response, where: str) -> str:
    assert resp.status_code == 422, resp.text
    [err] = [e for e in resp.json()["detail"] if e["loc"][-1] == "plate"]
    assert err["loc"] == [where, "plate"], err
    msg = err["msg"]
    assert isinstance(msg, str)
    # Chinese first, English after; names the field and gives examples.
    assert msg.startswith("车牌号无效（plate）"), msg
    assert "陕K12345" in msg and "晋B1234挂" in msg and "not a valid Chinese plate" in msg, msg
    return msg


def test_issue_normalises_the_plate_into_the_row_and_the_signed_ticket(c: Central) -> None:
    for typed, plate in (("陕k·8a3b2", "陕K8A3B2"), (" 晋Ｂ１２３４挂 ", "晋B1234挂"),
                         ("陕K D12345", "陕KD12345")):
        r = c.call("POST", "/tickets", json={**TRIP, "plate": typed})
        assert r.status_code == 201, r.text
        t = r.json()
        assert t["plate"] == plate
        assert parse_ticket(t["qr"]).ticket.plate == plate  # what the gate will compare
        assert c.count("SELECT count(*) FROM tickets WHERE id = %s AND plate = %s",
                       t["ticket_id"], plate) == 1


@pytest.mark.parametrize("typed", ["ABC123", "陕KI2345", "陕K1234", "", "陕K123456789"])
def test_issue_refuses_a_non_plate_with_a_bilingual_422(c: Central, typed: str) -> None:
    before = c.count("SELECT count(*) FROM tickets")
    _plate_error(c.call("POST", "/tickets", json={**TRIP, "plate": typed}), "body")
    assert c.count("SELECT count(*) FROM tickets") == before


def test_the_library_refuses_too(c: Central) -> None:
    """Callers of service.issue that bypass the API (scripts, future CLIs) get the same rule."""
    with psycopg.connect(c.url) as conn, pytest.raises(TicketInputError, match="车牌号无效"):
        service.issue(conn, service.IssueRequest(
            enterprise=ENT_A, site="S61082101", plate="ABC123", buyer="鑫源兰炭",
            destination="保德县", coal_type="洗混煤", planned_net_kg=34500),
            who="t", now=datetime.now(UTC))


def test_plate_filters_normalise_tickets_weighings_alarms(c: Central) -> None:
    r = c.call("POST", "/tickets", json={**TRIP, "plate": "陕K56789"})
    assert r.status_code == 201, r.text
    found = c.call("GET", "/tickets", params={"plate": "陕k·56789"})
    assert found.status_code == 200, found.text
    assert [t["ticket_id"] for t in found.json()["tickets"]] == [r.json()["ticket_id"]]
    _plate_error(c.call("GET", "/tickets", params={"plate": "ABC123"}), "query")

    # A weighing of that truck without a ticket: the weighing and its alarm, found by a typed
    # lower-case, dotted plate.
    with psycopg.connect(c.url) as conn:
        c.gate.config(ticket_required=True)
        c.gate.load("陕K56789", None)
        c.gate.push(make_ingestor(conn))
        conn.commit()
    w = c.call("GET", "/weighings", who="bureau", params={"plate": "陕k 56789"})
    assert w.status_code == 200, w.text
    assert {i["plate"] for i in w.json()["items"]} == {"陕K56789"}
    assert len(w.json()["items"]) == 2  # tare and gross
    _plate_error(c.call("GET", "/weighings", who="bureau", params={"plate": "ABC123"}), "query")
    a = c.call("GET", "/alarms", who="bureau", params={"plate": "陕k·56789"})
    assert a.status_code == 200, a.text
    assert a.json() and all(x["detail"].get("plate") == "陕K56789" for x in a.json()), a.json()
    none = c.call("GET", "/alarms", who="bureau", params={"plate": "陕K99999"})
    assert none.status_code == 200 and none.json() == []
    _plate_error(c.call("GET", "/alarms", who="bureau", params={"plate": "ABC123"}), "query")


def test_same_key_same_body_returns_the_same_ticket(c: Central) -> None:
    body = {**TRIP, "plate": "陕K11111", "valid_from": "2026-12-04T08:00:00Z"}
    h = {"Idempotency-Key": "form-fill-0001"}
    first = c.call("POST", "/tickets", json=body, headers=h)
    assert first.status_code == 201, first.text
    # The retry may write the plate differently: it is the same request once normalised.
    again = c.call("POST", "/tickets", json={**body, "plate": "陕k·11111"}, headers=h)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["ticket_id"] == first.json()["ticket_id"]
    assert again.json()["qr"] == first.json()["qr"]
    assert c.count("SELECT count(*) FROM tickets WHERE idempotency_key = 'form-fill-0001'") == 1
    assert c.count("SELECT count(*) FROM tickets WHERE plate = '陕K11111'") == 1

    other = c.call("POST", "/tickets", json={**body, "planned_net_kg": 20000}, headers=h)
    assert other.status_code == 409, other.text
    detail = other.json()["detail"]
    assert first.json()["ticket_id"] in detail and "different request" in detail, detail
    assert "Idempotency-Key" in detail and "新" in detail
    assert c.count("SELECT count(*) FROM tickets WHERE plate = '陕K11111'") == 1

    # Keys belong to an enterprise: another mine's same key is its own request.
    b = c.call("POST", "/tickets", who="b", headers=h,
               json={**body, "site": "S61082201", "plate": "陕K22222"})
    assert b.status_code == 201, b.text
    # Without a key, each POST is a new ticket (the API as before).
    n = c.count("SELECT count(*) FROM tickets WHERE plate = '陕K11111'")
    assert c.call("POST", "/tickets", json=body).status_code == 201
    assert c.count("SELECT count(*) FROM tickets WHERE plate = '陕K11111'") == n + 1


def test_a_malformed_key_is_refused(c: Central) -> None:
    r = c.call("POST", "/tickets", json={**TRIP, "plate": "陕K33333"},
               headers={"Idempotency-Key": "short"})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"], r.text


def test_the_same_key_arriving_at_once_issues_one_ticket(c: Central) -> None:
    """Eight copies of one request in flight together (a double click, a proxy retrying)."""
    body = {**TRIP, "plate": "陕K44444"}
    h = {"Idempotency-Key": "burst-7f3a9c1e"}
    results: list[httpx.Response] = []
    go = threading.Barrier(8)

    def send() -> None:
        go.wait()
        results.append(c.call("POST", "/tickets", json=body, headers=h))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 8
    assert sorted(r.status_code for r in results) == [200] * 7 + [201], \
        [(r.status_code, r.text) for r in results]
    assert len({r.json()["ticket_id"] for r in results}) == 1
    assert c.count("SELECT count(*) FROM tickets WHERE plate = '陕K44444'") == 1
