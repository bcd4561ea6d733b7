"""The bureau dashboard in a real headless Chromium against the real API server."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from central.alarms import sweep_offline
from central.api import create_app
from central.api.app import DASHBOARD_DIR
from central.ingest.worker import Ingestor
from edge_agent.sync.protocol import Status, topic
from ledger.keys import SignerKey
from tests.central.api_support import Gate, api_settings, auth, token
from tests.support.api_server import Server
from tests.support.cdp import Browser
from tests.support.pg import make_database

SCREENSHOT_COPY = Path("/tmp/coalgate-dashboard.png")
STALLED_SCREENSHOT_COPY = Path("/tmp/coalgate-dashboard-stalled.png")


def test_dashboard_has_no_external_assets():
    for path in DASHBOARD_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path.name
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text), path.name
        assert "import(" not in text and "@import" not in text, path.name


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Browser, Server, Gate,
                                                                       Ingestor]]:
    url, drop = make_database(migrated=False)
    tmp = tmp_path_factory.mktemp("dash")
    try:
        app = create_app(api_settings(), url=url, sweep_offline_sites=False)
        with Server(app) as server, psycopg.connect(url) as conn:
            admin, bureau = token(url, "admin"), token(url, "bureau", label="值班员张三")
            gate = Gate("mine-7", tmp, "榆阳煤业")
            r = httpx.post(f"{server.base}/api/v1/sites", json=gate.enrol_body("7号矿 北磅房"),
                           headers=auth(admin))
            assert r.status_code == 201, r.text
            ingestor = Ingestor(conn, SignerKey.generate("coalgate-central"))
            gate.truck("陕K10001", coal_type="块煤")
            gate.truck("陕K10002", tare=14000, gross=44000, coal_type="末煤")
            gate.truck("陕K10003", gross=52000, limit=49000)
            gate.push(ingestor)
            gate.status(ingestor)
            browser = Browser(tmp / "profile")
            try:
                browser.navigate(f"{server.base}/dashboard/#token={bureau}")
                browser.wait_for("document.body.dataset.stream === 'live'", 15,
                                 "the dashboard to log in and open the live stream")
                # Tonnage and the weighing search load beside the stream, not before it.
                browser.wait_for("document.querySelectorAll('#tonnage tr').length > 0"
                                 " && document.querySelectorAll('#weighings tr').length > 0",
                                 15, "the tonnage and weighing tables to load")
                yield browser, server, gate, ingestor
            finally:
                browser.close()
                gate.close()
    finally:
        drop()


def rows(browser: Browser, tbody: str) -> list[str]:
    return browser.eval(
        f"[...document.querySelectorAll('#{tbody} tr')].map(r => r.innerText)")


def test_loads_in_chinese_with_sites_tonnage_and_alarms(page):
    browser, _, _, _ = page
    assert browser.eval("document.documentElement.lang") == "zh-CN"
    assert browser.eval("document.querySelector('h1').innerText") == "煤炭运销监管平台"
    assert "#token=" not in browser.eval("location.href")  # the token left the address bar
    sites = rows(browser, "sites")
    assert len(sites) == 1 and "7号矿 北磅房" in sites[0] and "在线" in sites[0]
    assert browser.eval("document.querySelector('#map .map-site').classList.contains('on')")
    tonnage = " ".join(rows(browser, "tonnage"))
    assert "块煤" in tonnage and "末煤" in tonnage and "70.00" in tonnage and "30.00" in tonnage
    alarms = rows(browser, "alarms")
    assert any("超载" in r and "陕K10003" in r for r in alarms), alarms
    weighings = rows(browser, "weighings")
    assert len(weighings) == 6 and any("陕K10001" in r for r in weighings)


def test_new_alarm_appears_within_two_seconds_without_reload_and_sounds(page, tmp_path):
    browser, _, gate, ingestor = page
    browser.eval("window.__notReloaded = true")
    beeps = browser.eval("window.coalgateBeeps")
    gate.truck("陕K99999", released=False, ticket=None)  # no unissued ticket to re-check
    gate.push(ingestor)  # committed server-side: the page must show it on its own
    took = browser.wait_for(
        "[...document.querySelectorAll('#alarms tr')].some(r => r.innerText.includes('逃逸'))",
        2.0, "the escape alarm to appear in the page")
    assert took < 2.0
    assert browser.eval("window.__notReloaded") is True
    assert browser.eval("window.coalgateBeeps") > beeps
    fresh = browser.eval("[...document.querySelectorAll('#alarms tr.fresh')]"
                         ".map(r => r.dataset.code).sort()")
    assert fresh == ["barrier_forced", "escape"]  # the barrier was down after the last truck
    shot = browser.screenshot(tmp_path / "dashboard.png")
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, SCREENSHOT_COPY)  # for a person to look at


def test_switches_to_english_and_back(page):
    browser, _, _, _ = page
    browser.eval("document.getElementById('lang').click()")
    assert browser.eval("document.querySelector('h1').innerText") == "Coal Transport Supervision"
    assert browser.eval("document.documentElement.lang") == "en"
    browser.wait_for("document.querySelector('#alarms').innerText.includes('Overload')", 2,
                     "alarm texts in English")
    browser.eval("document.getElementById('lang').click()")
    assert browser.eval("document.querySelector('h1').innerText") == "煤炭运销监管平台"


def test_acknowledge_and_resolve_from_the_page(page):
    browser, server, _, _ = page
    browser.eval("document.querySelector('#alarms tr[data-code=overload] button').click()")
    browser.wait_for("document.querySelector('#alarms tr[data-code=overload]')"
                     ".classList.contains('acknowledged')", 3, "the alarm to be acknowledged")
    assert "值班员张三" in browser.eval(
        "document.querySelector('#alarms tr[data-code=overload]').innerText")
    browser.eval("document.querySelector('#alarms tr[data-code=overload] button').click()")
    browser.eval("document.getElementById('resolve-note').value = '已卸货复磅'")
    browser.eval("document.getElementById('resolve-form').requestSubmit()")
    browser.wait_for("!document.querySelector('#alarms tr[data-code=overload]')", 3,
                     "the resolved alarm to leave the open list")


def test_weighing_search_by_plate(page):
    browser, _, _, _ = page
    browser.eval("document.querySelector('#search-form [name=plate]').value = '陕K10002'")
    browser.eval("document.getElementById('search-form').requestSubmit()")
    browser.wait_for("document.querySelectorAll('#weighings tr').length === 2", 3,
                     "two weighings of 陕K10002")
    assert all("陕K10002" in r for r in rows(browser, "weighings"))


def test_only_same_origin_requests(page):
    browser, server, _, _ = page
    urls = json.loads(browser.eval(
        "JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))"))
    assert urls and all(u.startswith(server.base) for u in urls), urls


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_stalled_gate_shows_minutes_without_weighing_instead_of_online(page, tmp_path):
    """Issue 12, item 8: a gate whose heartbeat says a truck has waited 24 minutes with no
    weighing is shown as "24 分钟无过磅，有车等待", not a green 在线, on the table and the map;
    the gate_stalled alarm raised by the sweep reaches the page; once the gate reports idle
    the site is 在线 again."""
    browser, _, gate, ingestor = page
    row = f"document.querySelector('#sites tr[data-site=\"{gate.site}\"]')"
    waiting = datetime.now(UTC) - timedelta(minutes=24, seconds=20)
    held = {"state": "held", "last_weighing_ts": _iso(waiting + timedelta(seconds=5)),
            "waiting_since": _iso(waiting)}
    ingestor.handle(topic(gate.site, "status"),
                    Status("online", _iso(datetime.now(UTC)), gate=held).encode())
    rules = api_settings().rules  # the default threshold, 10 minutes
    assert sweep_offline(ingestor.conn, datetime.now(UTC), rules) == 1
    # The alarm arrives over the live stream, and the page reloads its sites with it.
    browser.wait_for(f"{row}.innerText.includes('24 分钟无过磅，有车等待')", 15,
                     "the stalled text in the sites table")
    text = browser.eval(f"{row}.innerText")
    assert "在线" not in text and "离线" not in text, text
    assert browser.eval(f"{row}.querySelector('.dot').className") == "dot stalled"
    assert browser.eval(f"{row}.className") == "stalled"
    assert browser.eval("document.querySelector('#map .map-site').getAttribute('class')") \
        == "map-site stalled"
    browser.wait_for("[...document.querySelectorAll('#alarms tr[data-code=gate_stalled]')]"
                     ".some(r => r.innerText.includes('磅房停滞')"
                     " && r.innerText.includes('有车等待自'))", 5,
                     "the gate_stalled alarm in the alarm list")
    shot = browser.screenshot(tmp_path / "stalled.png")
    shutil.copy(shot, STALLED_SCREENSHOT_COPY)  # for a person to look at
    browser.eval("document.getElementById('lang').click()")
    browser.wait_for(f"{row}.innerText.includes('no weighing for 24 minutes while trucks wait')",
                     5, "the stalled text in English")
    browser.eval("document.getElementById('lang').click()")
    # The gate moves again: idle, nobody waiting. The sweep resolves the alarm and the
    # dashboard's periodic refresh shows 在线.
    idle = {"state": "idle", "last_weighing_ts": _iso(datetime.now(UTC)), "waiting_since": None}
    ingestor.handle(topic(gate.site, "status"),
                    Status("online", _iso(datetime.now(UTC)), gate=idle).encode())
    assert sweep_offline(ingestor.conn, datetime.now(UTC), rules) == 0
    browser.wait_for(f"{row}.innerText.includes('在线') && {row}.className === 'up'", 15,
                     "the site back to 在线 (the dashboard refreshes its sites every 10 s)")
    assert browser.eval(f"{row}.querySelector('.dot').className") == "dot on"


def test_override_filter_and_tonnage_released_by_hand(page):
    """A held truck released by hand: an override alarm the bureau can filter for, and its
    load in the tonnage table's by-hand column."""
    browser, server, gate, ingestor = page
    txn = gate.txn()
    gate.append("weighing", {
        "txn": txn, "pass": "one_pass", "plate": "陕K77777", "plate_conf_pm": 960,
        "plate_source": "anpr", "axles": 6, "weight_kg": 45000, "gross_kg": 45000,
        "tare_kg": 15000, "net_kg": 30000, "tare_source": "stored", "tare_seq": None,
        "ticket_id": None, "limit_kg": 49000, "decision": "hold", "reasons": ["no_ticket"],
        "stable_ms": 3000, "snapshot_sha256": None, "coal_type": "块煤"})
    gate.append("override", {"txn": txn, "action": "manual_barrier_up", "operator": "李四",
                             "role": "supervisor", "reason": "票据系统故障，电话核实"})
    gate.push(ingestor)
    browser.wait_for("!!document.querySelector('#alarms tr[data-code=override_release]')", 10,
                     "the hand release to appear as an override alarm")
    row = browser.eval("document.querySelector('#alarms tr[data-code=override_release]')"
                       ".innerText")
    assert "人工放行" in row and "李四" in row and "票据系统故障" in row, row
    browser.eval("(() => { const c = document.getElementById('only-overrides');"
                 " c.checked = true; c.dispatchEvent(new Event('change')); })()")
    browser.wait_for("[...document.querySelectorAll('#alarms tr')].every("
                     "r => (r.dataset.code || '').startsWith('override_'))", 10,
                     "the list to show override alarms only")
    assert len(rows(browser, "alarms")) == 1
    browser.navigate(f"{server.base}/dashboard/")  # the token is remembered; tonnage reloads
    browser.wait_for("document.getElementById('tonnage-by-hand').innerText.includes('30.00')",
                     15, "the by-hand tonnage total to show the 30 t load")
    assert any("30.00 (1)" in r for r in rows(browser, "tonnage"))
