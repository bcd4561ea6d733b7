"""The operator console in a real headless Chromium, served by a real agent (real TCP scale
stream, real ledger). Screenshots land in the test's tmp dir (console-zh.png, console-en.png)."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.config import load_config
from tests.edge.encoders import xk_frame
from tests.support.cdp import Browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp: Path, *args: str) -> str:
    assert CHROMIUM, "Debian package 'chromium' is required (scripts/setup test installs it)"
    profile = tmp / "chrome-profile"
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={profile}", "--timeout=5000", *args],
        capture_output=True, text=True, timeout=90,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class ScaleServer:
    """A serial-to-Ethernet box in front of an XK3190: streams frames to whoever connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.kg = 0
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        while not self.stop:
            try:
                conn.sendall(xk_frame(self.kg))
            except OSError:
                return
            time.sleep(0.05)
        conn.close()


ANPR_SECRET = "anpr-secret-0123456789abcdef"
PASSWORDS = {"zhangsan": "op-password-1", "lisi": "sup-password-2"}


def start_agent(tmp_path: Path, console_extra: str = "") -> dict[str, Any]:
    """A real agent on a real TCP scale stream, with an operator (zhangsan), a supervisor (lisi)
    and an ANPR push secret; its JSON log lines go to tmp/agent.log."""
    from edge_agent.accounts import AccountStore
    from edge_agent.runtime import Log
    from ledger.keys import SignerKey, write_signer_file

    scale = ScaleServer()
    write_signer_file(tmp_path / "site.key", SignerKey.generate("console-site"))
    secret = tmp_path / "anpr.secret"
    secret.write_text(ANPR_SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    (tmp_path / "site.toml").write_text(f"""
[site]
id = "console-site"
name = "演示煤矿 1号磅"
key = "site.key"
ledger = "ledger.sqlite"
[scale]
protocol = "xk3190"
transport = "tcp"
host = "127.0.0.1"
port = {scale.port}
[io]
kind = "none"
[camera]
push_secret_file = "anpr.secret"
[policy]
stability_window_ms = 500
[[vehicles]]
plate = "陕K12345"
axles = 6
[console]
port = 0
accounts = "accounts.sqlite"
{console_extra}
""", encoding="utf-8")
    cfg = load_config(tmp_path / "site.toml")
    store = AccountStore(cfg.console.accounts)
    store.add("zhangsan", "operator", PASSWORDS["zhangsan"])
    store.add("lisi", "supervisor", PASSWORDS["lisi"])
    holder: dict[str, Any] = {"log_path": tmp_path / "agent.log"}
    log_file = open(holder["log_path"], "a", encoding="utf-8")  # noqa: SIM115

    def run() -> None:
        from edge_agent.runtime import Agent

        async def main() -> None:
            a = Agent(cfg, log=Log(log_file))
            holder["agent"], holder["loop"] = a, asyncio.get_running_loop()
            await a.run()

        asyncio.run(main())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    end = time.monotonic() + 20
    while "agent" not in holder or holder["agent"].console_port is None:
        assert time.monotonic() < end and t.is_alive(), "agent did not start"
        time.sleep(0.05)
    holder["scale"] = scale
    holder["url"] = f"http://127.0.0.1:{holder['agent'].console_port}"

    def stop() -> None:
        if not t.is_alive():
            return
        holder["loop"].call_soon_threadsafe(holder["agent"].stopping.set)
        t.join(timeout=20)
        scale.stop = True
        log_file.close()

    holder["stop"] = stop
    return holder


def log_lines(agent: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in agent["log_path"].read_text("utf-8").splitlines()]


def login(url: str, name: str) -> httpx.Client:
    """An httpx client logged in as ``name``, sending the session's anti-CSRF token."""
    c = httpx.Client(base_url=url, timeout=20)
    r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def push_plate(url: str, plate: str) -> httpx.Response:
    return httpx.post(url + "/device/anpr", json={"plate": plate, "confidence": 0.97},
                      headers={"Authorization": f"Bearer {ANPR_SECRET}"}, timeout=20)


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    holder = start_agent(tmp_path)
    yield holder
    holder["stop"]()


def test_console_shows_a_weighing_and_prints_a_slip(agent: Any, tmp_path: Path) -> None:
    url = agent["url"]
    agent["scale"].kg = 15200
    assert push_plate(url, "陕K12345").status_code == 200
    end = time.monotonic() + 20
    while not httpx.get(url + "/api/transactions").json():
        assert time.monotonic() < end, httpx.get(url + "/api/state").json()
        time.sleep(0.1)
    row = httpx.get(url + "/api/transactions").json()[0]
    assert row["plate"] == "陕K12345" and row["weight_kg"] == 15200

    # The page fills itself from /api/state and the live stream after load: wait for that
    # rather than dumping the DOM at the load event.
    browser = Browser(tmp_path / "cdp-profile")
    try:
        browser.navigate(url + "/")
        browser.wait_for("document.body.innerText.includes('演示煤矿 1号磅')", 20, "site name")
        browser.wait_for("document.body.innerText.includes('15,200 kg')", 20, "the weighing")
        text = browser.eval("document.body.innerText")
        assert "过磅台" in text and "陕K12345" in text and "放行" in text and "今日过磅" in text
        assert browser.eval("document.querySelector('a[href*=\"/slip/\"]') !== null")
        shot = browser.screenshot(tmp_path / "console-zh.png")
        assert shot.stat().st_size > 20_000
        browser.navigate(url + "/?lang=en")
        browser.wait_for("document.body.innerText.includes('Live weight')", 20, "English page")
        browser.wait_for("document.body.innerText.includes('Release')", 20, "English decision")
        assert "过磅台" not in browser.eval("document.body.innerText")
        browser.screenshot(tmp_path / "console-en.png")
    finally:
        browser.close()

    slip = chromium(tmp_path, "--dump-dom", f"{url}/slip/{row['seq']}")
    assert "过磅单" in slip and "15,200 kg" in slip and "<svg" in slip
    m = re.search(r"CGW1:console-site/(\d+)/([A-Za-z0-9_-]{43})", slip)
    assert m and int(m.group(1)) == row["seq"]
    import base64

    assert base64.urlsafe_b64decode(m.group(2) + "=").hex() == row["hash"]


def test_override_needs_a_reason_and_is_recorded(agent: Any) -> None:
    url = agent["url"]
    op, sup = login(url, "zhangsan"), login(url, "lisi")
    r = op.post("/api/override", json={"action": "manual_barrier_up", "reason": ""})
    assert r.status_code == 422
    # The operator is the account: a typed name is refused, not recorded.
    r = op.post("/api/override", json={"action": "manual_barrier_up", "operator": "王五",
                                       "reason": "核实后放行"})
    assert r.status_code == 422
    r = op.post("/api/override", json={"action": "manual_plate", "reason": "车牌污损",
                                       "plate": "陕K12345"})
    assert r.status_code == 409 and "truck on the platform" in r.json()["detail"]
    # A void takes a weighing out of the record: supervisors only.
    r = op.post("/api/override", json={"action": "void", "reason": "误操作",
                                       "txn": "console-site-x-1"})
    assert r.status_code == 403 and "supervisor" in r.json()["detail"]
    r = sup.post("/api/override", json={"action": "void", "reason": "误操作",
                                        "txn": "console-site-x-1"})
    assert r.status_code == 200
    end = time.monotonic() + 20
    while True:
        voids = [e for e in log_lines(agent) if e.get("msg") == "entry"
                 and e.get("action") == "void"]
        if voids:
            break
        assert time.monotonic() < end, "no void entry was written to the ledger within 20 s"
        time.sleep(0.1)
    assert httpx.get(url + "/slip/999").status_code == 404
    from ledger.store import LedgerStore

    agent["stop"]()
    with LedgerStore.open(agent["log_path"].parent / "ledger.sqlite",
                          site="console-site") as st:
        bodies = [se.entry.body for se in st.iter_entries() if se.entry.body.get("action")]
    assert any(b["action"] == "void" and b["operator"] == "lisi" for b in bodies), bodies
