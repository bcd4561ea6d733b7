"""The sales-office issuance form and the driver page in headless Debian Chromium, at a phone's
viewport: issue through the form, read the clear refusal under `enforce`, open the driver page
and decode its QR from a screenshot of the screen; void a ticket through the form (reason,
confirmation, the API's role check) and see it voided in the database, the API and the pages."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import zxingcpp
from PIL import Image

from central.tickets import issuers, service
from central.tickets.settings import TicketSettings
from ledger.keys import SignerKey
from ledger.ticket import default_quota_period
from tests.support.api_server import Server
from tests.support.cdp import Browser
from tests.support.pg import make_database
from tests.tickets.central_support import (
    ENT_A,
    Gate,
    auth,
    make_ingestor,
    make_token,
    ticket_app,
)

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Server, Browser, Gate]]:
    url, drop = make_database()
    tmp = tmp_path_factory.mktemp("pages")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            gate = Gate("S61082101", tmp, ENT_A)
            gate.enrol(conn, name="3号矿东磅房")
            issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC))
        with Server(ticket_app(url, TicketSettings(root_key=ROOT))) as server:
            browser = Browser(tmp / "profile")
            try:
                browser.send("Emulation.setDeviceMetricsOverride", **PHONE)
                yield url, server, browser, gate
            finally:
                browser.close()
                gate.close()
    finally:
        drop()


def _shot(browser: Browser, name: str) -> Image.Image:
    out = Path(os.environ.get("COALGATE_SCREENSHOTS", "/tmp")) / f"coalgate-{name}.png"
    browser.screenshot(out)
    return Image.open(io.BytesIO(out.read_bytes())).convert("L")


def _set(browser: Browser, field: str, value: str) -> None:
    browser.eval(f"document.getElementById({field!r}).value = {value!r}")


def _fill(browser: Browser, planned_t: str) -> None:
    for field, value in (("plate", "陕K8A3B2"), ("buyer", "鑫源兰炭"), ("destination", "保德县"),
                         ("coal_type", "洗混煤"), ("planned", planned_t), ("hours", "24")):
        _set(browser, field, value)
    browser.eval("document.getElementById('issue').requestSubmit()")


def test_issue_through_the_form_then_driver_page_qr_scans_from_the_screen(
    site: tuple[str, Server, Browser, Gate]
) -> None:
    url, server, browser, gate = site
    token = make_token(url, "enterprise", ENT_A)
    browser.navigate(f"{server.base}/tickets/new#token={token}")
    browser.wait_for("document.getElementById('site').options.length === 1", 20, "site list")
    assert browser.eval("document.documentElement.lang") == "zh-CN"
    assert browser.eval("document.querySelector('h1').textContent") == "开具电子煤管票"
    browser.eval("document.getElementById('lang').click()")
    assert browser.eval("document.querySelector('h1').textContent") == "Issue an e-ticket"
    browser.eval("document.getElementById('lang').click()")
    assert "3号矿东磅房" in browser.eval("document.getElementById('site').options[0].text")

    _fill(browser, "34.5")
    browser.wait_for("!document.getElementById('result').hidden", 20, "issued ticket")
    browser.wait_for("document.getElementById('result-qr').naturalWidth > 0", 20, "QR image")
    ticket_id = browser.eval("document.getElementById('ticket-id').textContent")
    with psycopg.connect(url) as conn:
        rec = service.get_ticket(conn, ticket_id)
    assert (rec.planned_net_kg, rec.plate, rec.site) == (34500, "陕K8A3B2", "S61082101")
    assert (rec.valid_to - rec.valid_from).total_seconds() == 24 * 3600
    shot = _shot(browser, "form-issued")
    assert [r.text for r in zxingcpp.read_barcodes(shot)] == [rec.qr]

    # Only local assets: nothing was fetched from any other origin (no CDN).
    origins = browser.eval("performance.getEntriesByType('resource').map(e => e.name)")
    assert origins and all(u.startswith(server.base) for u in origins), origins

    # Quota enforced: the form shows the central's refusal, in words.
    with psycopg.connect(url) as conn:
        service.set_capacity(conn, ENT_A, default_quota_period(datetime.now(UTC)), 40_000, "t")
        service.set_policy(conn, ENT_A, "enforce", "t")
    _fill(browser, "20")
    browser.wait_for("document.getElementById('message').className === 'error'", 20,
                     "refusal message")
    message = browser.eval("document.getElementById('message').textContent")
    assert "超出核定产能" in message and "剩余 5.5 t" in message
    _shot(browser, "form-refused")

    # The driver opens the link on a phone.
    link = browser.eval("document.getElementById('driver-link').href")
    browser.navigate(link)
    browser.wait_for("document.getElementById('ticket-qr')", 20, "driver page")
    assert browser.eval("document.getElementById('state').textContent") == "有效"
    width = browser.eval(
        "document.querySelector('#ticket-qr svg').getBoundingClientRect().width")
    assert width >= 300, f"QR only {width} CSS px wide on a 390 px phone screen"
    assert browser.eval("document.documentElement.scrollWidth") <= PHONE["width"]
    shot = _shot(browser, "driver-page")
    assert [r.text for r in zxingcpp.read_barcodes(shot)] == [rec.qr]
    browser.eval("document.querySelector('a.lang').click()")
    browser.wait_for("document.documentElement.lang === 'en'", 20, "English page")
    assert browser.eval("document.getElementById('state').textContent") == "Valid"

    # After weighing: the same page shows the loading certificate, whose QR anyone can check.
    with psycopg.connect(url) as conn:
        ingestor = make_ingestor(conn)
        seq = gate.load("陕K8A3B2", rec.id, net=34_120, tare=15_380)
        gate.push(ingestor)
        gate.checkpoint(ingestor)
    browser.navigate(link)
    browser.wait_for(f"document.querySelector('[data-slip=\"{gate.site}/{seq}\"]')", 20,
                     "loading certificate")
    assert browser.eval("document.getElementById('state').textContent") == "已使用"
    assert browser.eval("document.getElementById('ticket-qr')") is None  # used: no QR to show
    text = browser.eval("document.querySelector('.slip').innerText")
    assert "装载证明" in text and "34,120 kg" in text and "49,500 kg" in text
    browser.eval("document.querySelector('.slip').scrollIntoView()")
    shot = _shot(browser, "driver-slip")
    slip_url = browser.eval("document.querySelector('.slip a').href")
    assert [r.text for r in zxingcpp.read_barcodes(shot)] == [slip_url]
    browser.navigate(slip_url)
    browser.wait_for("document.getElementById('verdict')", 20, "slip check page")
    assert "验证通过" in browser.eval("document.getElementById('verdict').textContent")
    _shot(browser, "slip-check")


def _open_form(browser: Browser, server: Server, token: str) -> None:
    # about:blank first: the same page with only a new #token would not load again.
    browser.navigate("about:blank")
    browser.wait_for("location.href === 'about:blank'", 20, "blank page")
    browser.navigate(f"{server.base}/tickets/new#token={token}")
    browser.wait_for("document.getElementById('site').options.length === 1", 20, "site list")


def _row(ticket_id: str) -> str:
    return f"document.querySelector('#recent-rows tr[data-ticket=\"{ticket_id}\"]')"


def test_void_a_ticket_through_the_form_after_a_confirmation_with_a_reason(
    site: tuple[str, Server, Browser, Gate]
) -> None:
    url, server, browser, _ = site
    with psycopg.connect(url) as conn:  # whatever the other tests left: issue under monitor
        service.set_policy(conn, ENT_A, "monitor", "t")
    token = make_token(url, "enterprise", ENT_A)
    _open_form(browser, server, token)
    _fill(browser, "12")
    browser.wait_for("!document.getElementById('result').hidden", 20, "issued ticket")
    ticket_id = browser.eval("document.getElementById('ticket-id').textContent")
    assert browser.eval("document.getElementById('result-state').textContent") == "有效"
    browser.wait_for(_row(ticket_id), 20, "the new ticket in the recent list")

    def stored() -> service.TicketRecord:
        with psycopg.connect(url) as conn:
            return service.get_ticket(conn, ticket_id)

    # "作废此票" only opens the confirmation: the ticket, its trip and a warning; nothing voided.
    assert not browser.eval("document.getElementById('result-void').hidden")
    browser.eval("document.getElementById('result-void').click()")
    assert not browser.eval("document.getElementById('void').hidden")
    assert browser.eval("document.getElementById('void-id').textContent") == ticket_id
    assert "陕K8A3B2" in browser.eval("document.getElementById('void-trip').textContent")
    assert "不可撤销" in browser.eval("document.querySelector('#void .warn').textContent")
    assert stored().voided_at is None
    # No reason, no void: the browser keeps the form (required field), the API is not called.
    browser.eval("document.getElementById('void').requestSubmit()")
    assert not browser.eval("document.getElementById('void').hidden")
    assert stored().voided_at is None
    # Cancel closes it, still nothing voided.
    browser.eval("document.getElementById('void-cancel').click()")
    assert browser.eval("document.getElementById('void').hidden")
    assert stored().voided_at is None

    # A checkpoint token may list tickets but not void them: the page shows the API's 403.
    _open_form(browser, server, make_token(url, "checkpoint"))
    browser.wait_for(_row(ticket_id) + ".querySelector('button')", 20, "void button")
    browser.eval(_row(ticket_id) + ".querySelector('button').click()")
    _set(browser, "void-reason", "越权 not mine")
    browser.eval("document.getElementById('void-confirm').click()")
    browser.wait_for("document.getElementById('message').className === 'error'", 20,
                     "refusal message")
    assert browser.eval("document.getElementById('message').textContent").startswith("作废失败：")
    assert stored().voided_at is None

    # The sales office voids it from the recent list, with a reason, and confirms.
    _open_form(browser, server, token)
    browser.wait_for(_row(ticket_id) + ".querySelector('button')", 20, "void button")
    browser.eval(_row(ticket_id) + ".querySelector('button').click()")
    assert browser.eval("document.getElementById('void-id').textContent") == ticket_id
    _set(browser, "void-reason", "订单取消 order cancelled")
    _shot(browser, "form-void-confirm")
    browser.eval("document.getElementById('void-confirm').click()")
    browser.wait_for("document.getElementById('message').className === 'ok'", 20, "voided")
    assert browser.eval("document.getElementById('message').textContent") == f"已作废 {ticket_id}"
    assert browser.eval("document.getElementById('void').hidden")

    rec = stored()
    assert rec.voided_at is not None and rec.void_reason == "订单取消 order cancelled"
    assert rec.voided_by == "enterprise-test"
    api = httpx.get(f"{server.base}/api/v1/tickets/{ticket_id}", headers=auth(token), timeout=10)
    assert api.status_code == 200 and api.json()["state"] == "voided"

    # The page shows it: voided, and no void button for it any more (nor for any ticket that
    # is not valid or not yet valid).
    assert browser.eval(_row(ticket_id) + ".querySelector('.state').textContent") == "已作废"
    assert browser.eval(_row(ticket_id) + ".querySelector('button')") is None
    states = browser.eval("[...document.querySelectorAll('#recent-rows tr')].map(r => "
                          "[r.querySelector('.state').className, !!r.querySelector('button')])")
    assert all(button == (cls in ("state valid", "state not_yet_valid"))
               for cls, button in states), states
    assert browser.eval("document.documentElement.scrollWidth") <= PHONE["width"]
    browser.eval(_row(ticket_id) + ".scrollIntoView()")
    _shot(browser, "form-voided")
    browser.eval("document.getElementById('lang').click()")
    assert browser.eval(_row(ticket_id) + ".querySelector('.state').textContent") == "Voided"
    browser.eval("document.getElementById('lang').click()")

    # Voided again through the API: refused, so the page's path is the one that voided it.
    again = httpx.post(f"{server.base}/api/v1/tickets/{ticket_id}/void", headers=auth(token),
                       json={"reason": "again"}, timeout=10)
    assert again.status_code == 409 and "already voided" in again.json()["detail"]

    # Only local assets (no CDN), and the driver's page says voided, with the reason.
    origins = browser.eval("performance.getEntriesByType('resource').map(e => e.name)")
    assert origins and all(u.startswith(server.base) for u in origins), origins
    browser.navigate(api.json()["page_url"])
    browser.wait_for("document.getElementById('state')", 20, "driver page")
    assert browser.eval("document.getElementById('state').textContent") == "已作废"
    assert browser.eval("document.getElementById('ticket-qr')") is None
    assert "订单取消 order cancelled" in browser.eval("document.body.innerText")


def _double_click(browser: Browser, element_id: str) -> None:
    """A real double click (CDP mouse events at the element's centre), as a hurried clerk does."""
    browser.eval(f"document.getElementById({element_id!r}).scrollIntoView({{block: 'center'}})")
    box = browser.eval(f"(() => {{ const r = document.getElementById({element_id!r})"
                       ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
                       " })()")
    x, y = box
    for count in (1, 2):
        for kind in ("mousePressed", "mouseReleased"):
            browser.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                         clickCount=count)


def test_form_refuses_a_non_plate_issues_once_on_a_double_click_and_clears(
    site: tuple[str, Server, Browser, Gate]
) -> None:
    url, server, browser, _ = site
    with psycopg.connect(url) as conn:  # whatever the other tests left: issue under monitor
        service.set_policy(conn, ENT_A, "monitor", "t")
    _open_form(browser, server, make_token(url, "enterprise", ENT_A))
    for field, value in (("plate", "ABC123"), ("buyer", "鑫源兰炭"), ("destination", "保德县"),
                         ("coal_type", "洗混煤"), ("planned", "30"), ("hours", "24")):
        _set(browser, field, value)
    _double_click(browser, "submit")
    browser.wait_for("document.getElementById('message').className === 'error'", 20,
                     "the plate refusal")
    message = browser.eval("document.getElementById('message').textContent")
    assert message.startswith("开票失败：车牌号无效（plate）"), message
    assert "'ABC123' 不是有效的车牌" in message and "陕K12345" in message and "晋B1234挂" in message
    _shot(browser, "form-bad-plate")
    # Refused: the clerk's input stays to be corrected, the button is usable again.
    assert browser.eval("document.getElementById('plate').value") == "ABC123"
    assert browser.eval("document.getElementById('buyer').value") == "鑫源兰炭"
    assert browser.eval("document.getElementById('submit').disabled") is False

    # Corrected as typed in a hurry (lower case, a dot), then double-clicked: one ticket.
    _set(browser, "plate", "陕k·7x215")
    _double_click(browser, "submit")
    browser.wait_for("!document.getElementById('result').hidden", 20, "issued ticket")
    browser.wait_for("document.getElementById('submit').disabled === false", 20,
                     "the button usable again")
    ticket_id = browser.eval("document.getElementById('ticket-id').textContent")
    browser.wait_for(_row(ticket_id), 20, "the new ticket in the recent list")
    # Every POST the page sent (resource timing lists each fetch; the GETs carry a query): the
    # refused one and a single issuing one, not one per click.
    posts = browser.eval("performance.getEntriesByType('resource').filter(e => e.name === "
                         f"{server.base + '/api/v1/tickets'!r}).length")
    assert posts == 2, posts
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, idempotency_key FROM tickets WHERE plate = '陕K7X215'"
                            ).fetchall()
    assert len(rows) == 1 and rows[0][0] == ticket_id and rows[0][1], rows
    assert browser.eval("document.getElementById('message').textContent") == f"已开票 {ticket_id}"

    # The form is clear for the next truck (the site and validity stay).
    for field in ("plate", "buyer", "buyer_name", "destination", "coal_type", "planned"):
        assert browser.eval(f"document.getElementById({field!r}).value") == "", field
    assert browser.eval("document.getElementById('site').value") == "S61082101"
    assert browser.eval("document.getElementById('hours').value") == "24"
    _shot(browser, "form-cleared")

    # The next fill is a new request with a new key: the same trip again is a second ticket.
    for field, value in (("plate", "陕K7X215"), ("buyer", "鑫源兰炭"), ("destination", "保德县"),
                         ("coal_type", "洗混煤"), ("planned", "30")):
        _set(browser, field, value)
    browser.eval("document.getElementById('issue').requestSubmit()")
    browser.wait_for("document.getElementById('message').textContent.startsWith('已开票') && "
                     f"!document.getElementById('message').textContent.endsWith({ticket_id!r})",
                     20, "the second ticket")
    with psycopg.connect(url) as conn:
        keys = conn.execute("SELECT idempotency_key FROM tickets WHERE plate = '陕K7X215'"
                            ).fetchall()
    assert len(keys) == 2 and keys[0][0] != keys[1][0], keys
