"""The console's front door against a real agent over real HTTP: logins, roles, CSRF, Origin
and Host checks, JSON-only bodies, body limits and device secrets. The browser cases run in a
real headless Chromium (tests/support/cdp.py): a page on another origin trying to forge a plate
push, and an operator logging in, out and idling out."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.edge.test_console import (
    ANPR_SECRET,
    PASSWORDS,
    log_lines,
    login,
    push_plate,
    start_agent,
)
from tests.support.cdp import Browser

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    holder = start_agent(tmp_path)
    yield holder
    holder["stop"]()


def refusals(agent: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in log_lines(agent) if e.get("msg") == "console request refused"]


def wait_logged(agent: dict[str, Any], pred: Any, what: str, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not any(pred(e) for e in log_lines(agent)):
        assert time.monotonic() < end, f"no log line for {what} within {timeout} s"
        time.sleep(0.1)


def test_every_state_changing_endpoint_needs_a_login_or_device_secret(agent: Any) -> None:
    from edge_agent.console.app import create_app

    # Enumerate the app's own routes, so an endpoint added later cannot be forgotten here.
    app = create_app(agent["agent"])
    unsafe = sorted({(m, r.path) for r in app.routes if isinstance(r, APIRoute)
                     for m in (r.methods or set()) & UNSAFE})
    paths = {p for _, p in unsafe}
    assert {"/api/override", "/api/scan", "/api/logout", "/device/anpr",
            "/device/scan"} <= paths, paths
    for method, path in unsafe:
        url = agent["url"] + path.replace("{secret}", "not-the-secret").replace("{seq}", "1")
        body = ({"name": "zhangsan", "password": "wrong-password"} if path == "/api/login"
                else {"action": "manual_barrier_up", "reason": "放行", "text": "x",
                      "plate": "陕K12345"})
        r = httpx.request(method, url, json=body, timeout=20)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
    # The old open push path is refused too (no session), and nothing reached the gate.
    assert httpx.post(agent["url"] + "/api/anpr", json={"plate": "陕K12345"}).status_code == 401
    assert agent["agent"].snapshot()["plate"] is None
    assert {e["why"] for e in refusals(agent)} >= {"no session", "bad device secret"}
    assert any(e.get("msg") == "console login failed" for e in log_lines(agent))


def test_json_only_same_origin_and_csrf(agent: Any) -> None:
    url = agent["url"]
    op = login(url, "zhangsan")
    ok = {"action": "manual_barrier_up", "reason": "核实后放行"}
    # A text/plain body (what a cross-site form can send) is refused before the route.
    r = op.post("/api/override", content=json.dumps(ok), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = op.post("/api/override", json=ok, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["detail"]
    r = op.post("/api/override", json=ok, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = op.post("/api/override", json=ok, headers={"X-CSRF-Token": "guessed"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    # DNS rebinding: a page served as evil.example resolving to this gate.
    r = op.get("/api/state", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "allowed" in r.json()["detail"]
    # A same-origin request with the token reaches the gate (which refuses it: there is no
    # truck on the platform; the point is that it got that far).
    r = op.post("/api/override", json={"action": "manual_plate", "reason": "车牌污损",
                                       "plate": "陕K12345"}, headers={"Origin": url})
    assert r.status_code == 409 and "truck on the platform" in r.json()["detail"], r.text
    whys = {e["why"] for e in refusals(agent)}
    assert {"not json", "cross-origin", "csrf", "host not allowed"} <= whys, whys


def test_operator_cannot_take_supervisor_actions(agent: Any) -> None:
    op, sup = login(agent["url"], "zhangsan"), login(agent["url"], "lisi")
    for action in ("open_lane", "void"):
        r = op.post("/api/override", json={"action": action, "reason": "空道抬杆",
                                           "txn": "console-site-x-1"})
        assert r.status_code == 403 and "supervisor" in r.json()["detail"], r.text
    # A supervisor passes the role check; what the gate then says is the gate's business.
    r = sup.post("/api/override", json={"action": "open_lane", "reason": "设备检修，空道抬杆"})
    assert r.status_code in (200, 409), r.text
    me = op.get("/api/session").json()
    assert me["name"] == "zhangsan" and me["role"] == "operator"
    assert op.post("/api/logout", json={}).status_code == 200
    r = op.post("/api/override", json={"action": "manual_barrier_up", "reason": "放行"})
    assert r.status_code == 401


def test_login_is_throttled_and_failures_are_logged(agent: Any) -> None:
    url = agent["url"]
    for _ in range(5):
        r = httpx.post(url + "/api/login", json={"name": "zhangsan", "password": "guess-123"})
        assert r.status_code == 401
    # Now even the right password waits: guessing stops at five tries per account.
    r = httpx.post(url + "/api/login", json={"name": "zhangsan",
                                             "password": PASSWORDS["zhangsan"]})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    failed = [e for e in log_lines(agent) if e.get("msg") == "console login failed"]
    assert len(failed) == 5 and all(e["name"] == "zhangsan" and e["ip"] for e in failed)
    # Another account is not locked by them.
    assert httpx.post(url + "/api/login", json={"name": "lisi", "password": PASSWORDS["lisi"]}
                      ).status_code == 200


def test_guesses_sent_all_at_once_are_throttled_like_guesses_in_a_row(agent: Any) -> None:
    """Issue 12 attack review: 30 wrong passwords for one account sent concurrently all passed
    the throttle check before the first failure was counted, so all 30 were tried (30 × 401)."""
    import asyncio
    from collections import Counter

    async def guesses() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=agent["url"], timeout=120) as c:
            return list(await asyncio.gather(*[
                c.post("/api/login", json={"name": "zhangsan", "password": f"guess-{i:03d}"})
                for i in range(30)]))

    codes = Counter(r.status_code for r in asyncio.run(guesses()))
    assert codes == {401: 5, 429: 25}, codes
    failed = [e for e in log_lines(agent) if e.get("msg") == "console login failed"]
    assert len(failed) == 5, failed


def test_disabling_demoting_or_repassing_an_account_ends_its_open_sessions(
        agent: Any, tmp_path: Path) -> None:
    """Issue 12 attack review: a session outlived `edge user disable` (up to session_max_s,
    12 h), and a demoted supervisor kept open_lane and void. Changes come from the real CLI
    (a separate process, as on the gate PC) while the gate runs."""
    import subprocess
    import sys

    from edge_agent.accounts import AccountStore

    url = agent["url"]
    op, sup = login(url, "zhangsan"), login(url, "lisi")
    plate = {"action": "manual_plate", "reason": "车牌污损", "plate": "陕K12345"}
    # Both sessions reach the gate (409: no truck on the platform).
    assert op.post("/api/override", json=plate).status_code == 409
    assert sup.post("/api/override", json=plate).status_code == 409
    cli = subprocess.run([sys.executable, "-m", "coalgate", "edge", "user", "disable",
                          "zhangsan", "-c", str(tmp_path / "site.toml")], capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    r = op.post("/api/override", json=plate)
    assert r.status_code == 401 and "log in" in r.json()["detail"], r.text
    assert op.get("/api/session").json()["name"] is None
    # A demotion ends the supervisor's session: it cannot open the lane on its old role.
    AccountStore(tmp_path / "accounts.sqlite").set_role("lisi", "operator")
    r = sup.post("/api/override", json={"action": "open_lane", "reason": "设备检修，空道抬杆"})
    assert r.status_code == 401, r.text
    # A new password ends sessions opened with the old one.
    again = login(url, "lisi")
    AccountStore(tmp_path / "accounts.sqlite").set_password("lisi", PASSWORDS["lisi"] + "-new")
    assert again.post("/api/override", json=plate).status_code == 401
    assert any(e.get("why") == "account changed" for e in refusals(agent))


def test_a_refused_device_push_never_writes_the_secret_to_the_log(agent: Any) -> None:
    """Attack review: a push refused for another reason (sent from a browser, i.e. with an
    Origin) logged its path, and the camera's secret is the last path segment."""
    url = agent["url"]
    r = httpx.post(f"{url}/device/anpr/{ANPR_SECRET}", json={"plate": "陕K12345"},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = httpx.post(f"{url}/device/nosuch/{ANPR_SECRET}", json={})
    assert r.status_code == 404
    wait_logged(agent, lambda e: e.get("why") == "unknown device endpoint", "the 404 refusal")
    assert ANPR_SECRET not in agent["log_path"].read_text(encoding="utf-8")
    assert {e["path"] for e in refusals(agent)} >= {"/device/anpr/…", "/device/nosuch/…"}


def test_half_open_connections_cannot_exhaust_the_gates_file_descriptors(agent: Any) -> None:
    """Attack review: 1,100 connections that never finish their request headers were all kept
    open (no deadline, no cap); under a 1,024 open-file limit the gate process itself ran out
    of file descriptors (EMFILE on accept, and for its ledger, scale and MQTT). Now the console
    holds at most MAX_CONNECTIONS and closes a request not complete within its deadline."""
    from edge_agent.console.app import MAX_CONNECTIONS, REQUEST_DEADLINE_S

    port = int(agent["url"].rsplit(":", 1)[1])
    socks = []
    for _ in range(MAX_CONNECTIONS + 200):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        socks.append(s)

    def closed_by_gate() -> int:
        time.sleep(0.5)
        n = 0
        for s in socks:
            try:
                n += s.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                pass  # still open
            except ConnectionError:
                n += 1
        return n

    end = time.monotonic() + 30
    while closed_by_gate() < 200:  # the ones beyond the cap are closed at once
        assert time.monotonic() < end, "connections beyond the cap were not closed in 30 s"
    end = time.monotonic() + REQUEST_DEADLINE_S + 30
    while closed_by_gate() < len(socks):  # and the rest at the request deadline
        assert time.monotonic() < end, "unfinished requests were not closed by their deadline"
    for s in socks:
        s.close()
    assert httpx.get(agent["url"] + "/api/state", timeout=20).status_code == 200


def test_device_pushes_need_the_device_secret(agent: Any) -> None:
    url = agent["url"]
    plate = {"plate": "陕K12345", "confidence": 0.97}
    assert httpx.post(url + "/device/anpr", json=plate).status_code == 401
    r = httpx.post(url + "/device/anpr", json=plate, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    # A logged-in browser session is no device: its cookie does not push plates.
    op = login(url, "zhangsan")
    assert op.post("/device/anpr", json=plate).status_code == 401
    r = httpx.post(url + "/device/anpr", json=plate, headers={
        "Authorization": f"Bearer {ANPR_SECRET}", "Origin": url})
    assert r.status_code == 403  # the secret in a browser's hands still does not push
    # No scanner secret is configured: /device/scan is off, the camera's secret is no key.
    r = httpx.post(url + "/device/scan", json={"text": "x"},
                   headers={"Authorization": f"Bearer {ANPR_SECRET}"})
    assert r.status_code == 401 and "scanner.push_secret_file" in r.json()["detail"]
    assert agent["agent"].snapshot()["plate"] is None
    # The secret as a header, or in the path as a Vzenith camera's push URL carries it.
    assert push_plate(url, "陕K12345").status_code == 200
    vz = {"AlarmInfoPlate": {"result": {"PlateResult": {"license": "陕K12345",
                                                        "confidence": 99}}}}
    assert httpx.post(f"{url}/device/anpr/{ANPR_SECRET}", json=vz).status_code == 200
    assert httpx.post(f"{url}/device/anpr/wrong{ANPR_SECRET}", json=vz).status_code == 401
    assert {e["why"] for e in refusals(agent)} >= {"bad device secret",
                                                  "device push from a browser"}


def _raw_post(port: int, path: str, headers: str, body_chunks: Any) -> bytes:
    """POST over a bare socket, feeding the body until the server answers; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
        s.setblocking(False)
        reply = b""
        for chunk in body_chunks:
            try:
                reply += s.recv(65536)
            except BlockingIOError:
                pass
            if reply:
                break
            try:
                s.sendall(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:  # the server closed after answering
                break
        s.setblocking(True)
        s.settimeout(60)
        while b"\r\n\r\n" not in reply:
            data = s.recv(65536)
            if not data:
                break
            reply += data
        return reply


def test_oversized_bodies_are_refused_before_reading_and_the_gate_keeps_weighing(
        agent: Any) -> None:
    port = agent["agent"].console_port
    mib = b"x" * (1 << 20)
    # 200 MB announced: refused on the headers, nothing of the body is read.
    reply = _raw_post(port, "/device/anpr", f"Authorization: Bearer {ANPR_SECRET}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 209715200\r\n",
                      iter([mib] * 200))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # 200 MB streamed without a length (chunked): cut off at the limit as it arrives.
    chunk = b"%x\r\n" % len(mib) + mib + b"\r\n"
    reply = _raw_post(port, "/device/anpr", f"Authorization: Bearer {ANPR_SECRET}\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                      iter([chunk] * 200))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # Unauthenticated, too, on a session endpoint.
    reply = _raw_post(port, "/api/override", "Content-Type: application/json\r\n"
                      "Content-Length: 209715200\r\n", iter([mib] * 200))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sum(1 for e in refusals(agent) if e["status"] == 413) >= 3
    # The gate kept running: it follows the scale to a new weight.
    agent["scale"].kg = 7340
    end = time.monotonic() + 20
    while httpx.get(agent["url"] + "/api/state", timeout=20).json()["weight_kg"] != 7340:
        assert time.monotonic() < end, "the gate stopped following the scale after the 413s"
        time.sleep(0.1)


# -- in Chromium ----------------------------------------------------------------------------

EVIL_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" target="sink" action="{console}/api/scan">
<input name='{{"text": "x", "pad": "' value='"}}'></form>
<form id="g" method="POST" enctype="text/plain" target="sink2" action="{console}/device/anpr">
<input name='{{"plate": "陕K66666", "pad": "' value='"}}'></form>
<iframe name="sink"></iframe><iframe name="sink2"></iframe>
<script>
window.results = [];
async function attack() {{
  const body = JSON.stringify({{plate: "陕K66666", confidence: 0.99}});
  for (const path of ["/device/anpr", "/device/anpr/guess", "/api/anpr"]) {{
    try {{
      await fetch("{console}" + path, {{method: "POST", mode: "no-cors", credentials: "include",
        headers: {{"Content-Type": "text/plain"}}, body}});
      window.results.push(path + " sent");
    }} catch (e) {{ window.results.push(path + " " + e); }}
  }}
  try {{
    await fetch("{console}/api/override", {{method: "POST", mode: "no-cors",
      credentials: "include", headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{action: "manual_barrier_up", reason: "forged"}})}});
    window.results.push("override sent");
  }} catch (e) {{ window.results.push("override " + e); }}
  document.getElementById("f").submit();
  document.getElementById("g").submit();
  window.done = true;
}}
attack();
</script></body></html>"""


class _EvilSite:
    """Another origin (another port) serving a page that attacks the console."""

    def __init__(self, console: str) -> None:
        page = EVIL_PAGE.format(console=console).encode()

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def browser_login(b: Browser, url: str, name: str) -> None:
    b.navigate(url + "/login")
    b.wait_for("document.documentElement.dataset.ready === '1'", 20, "the login page's script")
    b.eval(f"""(() => {{ const f = document.getElementById('login');
        f.elements.name.value = {json.dumps(name)};
        f.elements.password.value = {json.dumps(PASSWORDS[name])};
        f.requestSubmit(); }})()""")
    b.wait_for(f"location.pathname === '/' && document.getElementById('user') && "
               f"document.getElementById('user').textContent.includes({json.dumps(name)})",
               20, f"the console page logged in as {name}")


def test_forged_plate_push_from_another_origin_is_refused_in_chromium(
        agent: Any, tmp_path: Path) -> None:
    url = agent["url"]
    evil = _EvilSite(url)
    b = Browser(tmp_path / "cdp-evil")
    try:
        # Worst case: the operator is logged in in the same browser (the cookie is there).
        browser_login(b, url, "zhangsan")
        b.navigate(evil.url)
        b.wait_for("window.done === true", 30, "the attacking page to send its requests")
        wait_logged(agent, lambda e: e.get("msg") == "console request refused"
                    and e.get("path") == "/device/anpr" and e.get("method") == "POST"
                    and e.get("why") == "device push from a browser",
                    "the forged form POST to /device/anpr being refused")
        wait_logged(agent, lambda e: e.get("msg") == "console request refused"
                    and e.get("path") == "/api/scan", "the forged form POST to /api/scan")
        time.sleep(1.0)  # let any request that would have got through reach the gate
    finally:
        b.close()
        evil.close()
    st = agent["agent"].snapshot()
    assert st["plate"] is None and st["txn"] is None, st
    refused = {(e["path"], e["why"]) for e in refusals(agent)}
    assert ("/device/anpr", "device push from a browser") in refused, refused
    assert ("/api/override", "cross-origin") in refused, refused
    assert ("/api/anpr", "cross-origin") in refused, refused
    assert not any(e.get("msg") == "plate" for e in log_lines(agent))


def test_login_logout_expiry_and_roles_in_chromium(tmp_path: Path) -> None:
    agent = start_agent(tmp_path, "session_idle_s = 5\nreads_need_login = true")
    url = agent["url"]
    b = Browser(tmp_path / "cdp-login")
    try:
        # Reads need a login here: the console sends the browser to the login page.
        b.navigate(url + "/")
        b.wait_for("location.pathname === '/login' && document.body.innerText.includes('账号')"
                   " && document.documentElement.dataset.ready === '1'", 20,
                   "the Chinese login page")
        b.eval("document.getElementById('lang').click()")
        b.wait_for("document.body.innerText.includes('Password')", 10, "the English login")
        b.eval("document.getElementById('lang').click()")
        # A wrong password stays on the login page with a message.
        b.eval("""(() => { const f = document.getElementById('login');
            f.elements.name.value = 'zhangsan'; f.elements.password.value = 'wrong-pass';
            f.requestSubmit(); })()""")
        b.wait_for("document.getElementById('login-result').textContent.includes('密码错误')",
                   20, "the wrong-password message")
        browser_login(b, url, "zhangsan")
        assert "司磅员" in b.eval("document.getElementById('user').textContent")
        cookies = b.send("Network.getAllCookies")["cookies"]
        c = next(c for c in cookies if c["name"] == "coalgate_session")
        assert c["httpOnly"] and c["sameSite"] == "Strict"
        assert b.eval("document.cookie") == ""  # the page's script cannot read it
        # The operator's page cannot take a supervisor action: the gate answers 403.
        status = b.eval("post('/api/override', {action: 'open_lane', reason: '空道抬杆'})"
                        ".then(r => r.status)")
        assert status == 403
        assert b.eval("document.querySelector('option[value=open_lane]').disabled")
        # Log out: back at the login page, and the old session is gone.
        b.eval("document.getElementById('logout').click()")
        b.wait_for("location.pathname === '/login'", 20, "the login page after logout")
        assert httpx.get(url + "/api/state").status_code == 401
        # Idle past session_idle_s (5 s): the next action says the session expired.
        browser_login(b, url, "lisi")
        assert b.eval("document.querySelector('option[value=open_lane]').disabled") is False
        time.sleep(6.5)
        b.eval("""(() => { const f = document.getElementById('override');
            f.elements.action.value = 'manual_barrier_up'; f.elements.reason.value = '核实放行';
            f.requestSubmit(); })()""")
        b.wait_for("document.getElementById('override-result').textContent.includes('过期')",
                   20, "the session-expired message")
        assert any(e.get("why") == "no session" and e.get("path") == "/api/override"
                   for e in refusals(agent))
        b.screenshot(tmp_path / "console-expired.png")
    finally:
        b.close()
        agent["stop"]()


def test_log_budget_holds_back_a_flood_and_counts_it() -> None:
    from edge_agent.console.auth import LogBudget

    b = LogBudget(window_s=60, per_window=3)
    assert [b.take("1.2.3.4 csrf", t) for t in (0, 1, 2)] == [0, 0, 0]
    assert [b.take("1.2.3.4 csrf", t) for t in (3, 4, 5)] == [-1, -1, -1]
    assert b.take("5.6.7.8 csrf", 5) == 0  # another address has its own budget
    assert b.take("1.2.3.4 csrf", 61) == 3  # next window: says how many were held back
