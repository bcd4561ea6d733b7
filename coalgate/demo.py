"""``coalgate demo``: the whole system on one machine, on embedded defaults, until Ctrl-C.

The demo process holds the in-process MQTT broker (amqtt) and supervises the production
commands as child processes with generated config files:

* embedded PostgreSQL (``central.db``) in ``<data-dir>/central/pgdata``;
* ``coalgate central ingest`` and ``coalgate central serve`` (API + bureau dashboard);
* per site: ``coalgate sim run --repeat`` (indicator, gate IO, camera, trucks) and
  ``coalgate edge run`` (the gate agent with its operator console).

It also plays the people the simulator does not: the driver who shows an e-ticket QR at the
scanner, and the weighbridge operator who releases a held truck with a typed reason (never an
overloaded one — the gate refuses that). Keys, enrolment, the issuer trust list and API tokens
are made at start. On stop the gates' remaining entries are flushed to the central from their
ledgers (the ledger is the outbox), then everything is stopped: no process, port, pty link or
PostgreSQL server is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from coalgate.demo_plan import (
    ENTERPRISE_NAMES,
    ENTERPRISES,
    SitePlan,
    TruckPlan,
    central_config_toml,
    scenario_toml,
    site_config_toml,
    site_plans,
)
from coalgate.supervise import Child, ChildFailed
from edge_agent.console.client import alogin, device_headers, ensure_accounts, write_push_secret
from ledger.private_file import write_private

__all__ = ["app", "DemoOptions", "run_demo"]

app = typer.Typer(help="Run the whole system on one machine", add_completion=False)

MQTT_PROTOCOL = "3.1.1"  # amqtt speaks 3.1.1 only
HOLD_BEFORE_RELEASE_S = 2.0  # the demo operator looks at a held truck this long first


class DemoError(Exception):
    """The demo cannot start or keep running; the message says what and how to fix it."""


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    sites: int = 3
    duration: float | None = None
    speed: float = 4.0
    port: int = 0
    host: str = "127.0.0.1"


def say(msg: str) -> None:
    """Progress for people: one line, Chinese / English, flushed at once."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _coalgate() -> list[str]:
    return [sys.executable, "-m", "coalgate"]


def _free_port() -> int:
    from coalgate.broker import free_port

    return free_port()


# -- the people at the gate -------------------------------------------------------------------


@dataclass
class Gate:
    plan: SitePlan
    dir: Path
    sim: Child
    edge: Child
    console_port: int
    trucks: dict[str, TruckPlan]
    truth_pos: int = 0
    held_since: dict[str, float] = field(default_factory=dict)
    identify_since: dict[str, float] = field(default_factory=dict)
    shown: str | None = None  # the plate the camera last pushed
    qr: dict[str, str] = field(default_factory=dict)  # plate -> the QR its driver holds
    released: set[str] = field(default_factory=set)
    tickets_issued: int = 0
    driver: asyncio.Task[None] | None = None
    last_error: str | None = None
    driver_stop: asyncio.Event | None = None
    # The bureau's trust-root key(s), written into the gate's [tickets] trust_roots.
    trust_roots: tuple[str, ...] = ()
    # Console accounts (name -> (role, password)) and the devices' push headers.
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)
    anpr_auth: dict[str, str] = field(default_factory=dict)
    scanner_auth: dict[str, str] = field(default_factory=dict)
    operator_http: Any = None  # an httpx.AsyncClient logged in as the demo's operator

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"


class TicketDesk:
    """The mines' sales offices: e-tickets issued through the central (central.tickets).

    One database connection, used by one driver at a time (issuing takes a few ms).
    """

    def __init__(self, url: str, issuer_keys: Any = None) -> None:
        import threading

        self._issuer_keys = issuer_keys  # central.tickets.keystore store (the demo's dir)

        from central.db import connect

        self._conn = connect(url, autocommit=True)
        self._lock = threading.Lock()

    def issue(self, plan: SitePlan, truck: TruckPlan) -> str:
        from central.tickets.service import IssueRequest, issue

        now = datetime.now(UTC).replace(microsecond=0)
        req = IssueRequest(
            enterprise=plan.enterprise, site=plan.site_id, plate=truck.plate, buyer="鑫源",
            destination="府谷", coal_type="洗混煤", planned_net_kg=max(1, truck.load_kg),
            valid_from=now - timedelta(minutes=5), valid_to=now + timedelta(hours=12),
            buyer_name="府谷县鑫源兰炭有限公司",
        )
        with self._lock:
            return issue(self._conn, req, who="演示销售科 demo sales office", now=now,
                         issuer_keys=self._issuer_keys).qr

    def close(self) -> None:
        self._conn.close()


async def _driver_loop(gate: Gate, desk: TicketDesk, stop: asyncio.Event) -> None:
    """The driver and operator of one gate, from the moment its agent is up.

    The camera must name a truck while it drives on: once it stands on the platform with the
    next truck on the entry loop, the gate takes a new plate reading for the next truck.
    """
    import httpx

    async with httpx.AsyncClient(timeout=2) as http:
        while not stop.is_set():
            try:
                await _drive(gate, http, desk)
            except Exception as exc:  # e.g. a restarting gate: say it once, try again
                if repr(exc) != gate.last_error:
                    gate.last_error = repr(exc)
                    say(f"警告 warning: {gate.plan.site_id} 司机/司磅员 driver/operator: {exc!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


async def _drive(gate: Gate, http: Any, desk: TicketDesk) -> None:
    """One pass of the driver and operator loop for a gate (called every few hundred ms)."""
    truth = gate.dir / "truth.jsonl"
    if truth.exists():
        with truth.open("rb") as f:
            f.seek(gate.truth_pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next pass
        gate.truth_pos += end
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "on_platform" and rec.get("plate") in gate.trucks:
                await _truck_drives_on(gate, gate.trucks[rec["plate"]], str(rec.get("pass")),
                                       http, desk)
    await _watch_gate(gate, http)


async def _truck_drives_on(gate: Gate, truck: TruckPlan, pass_kind: str, http: Any,
                           desk: TicketDesk) -> None:
    # The lane camera's ANPR pushes the plate it sees as the truck rolls onto the platform
    # (not at the queue: a push per queued truck would name several plates for one weighing).
    # The simulator's own --anpr-push speaks a vendor format the console does not take, so
    # the demo plays the camera.
    swaps = [str(c["shown_plate"]) for c in (truck.cheat.tables if truck.cheat else ())
             if c.get("kind") == "plate_swap" and c.get("pass", "gross") == pass_kind]
    shown = swaps[0] if swaps else truck.plate
    gate.shown = shown
    with contextlib.suppress(Exception):
        await http.post(gate.console + "/device/anpr", json={"plate": shown, "confidence": 0.95},
                        headers=gate.anpr_auth)
    # The driver scans the e-ticket, issued by the mine's sales office, on the loaded pass.
    gate.qr.pop(shown, None)
    if pass_kind == "gross" and truck.ticket:
        text = gate.qr[shown] = await asyncio.to_thread(desk.issue, gate.plan, truck)
        with contextlib.suppress(Exception):
            await http.post(gate.console + "/device/scan", json={"text": text},
                            headers=gate.scanner_auth)


async def _watch_gate(gate: Gate, http: Any) -> None:
    """The operator's eye on the console: re-present a stuck identification, release holds."""
    try:
        st = (await http.get(gate.console + "/api/state")).json()
    except Exception:
        return
    txn = st.get("txn")
    if txn not in gate.identify_since and txn not in gate.held_since:
        # A new transaction: forget the old ones (a long run must not grow without bound).
        gate.identify_since.clear()
        gate.held_since.clear()
        if len(gate.released) > 100:
            gate.released.clear()
    if st.get("state") == "identify" and txn:
        # Waiting for a plate or ticket longer than the gate's own timeout: the camera reads
        # again and the driver shows the QR again, as they would at a real lane.
        since = gate.identify_since.setdefault(txn, time.monotonic())
        if time.monotonic() - since > 4.0 and gate.shown is not None:
            gate.identify_since[txn] = time.monotonic()
            with contextlib.suppress(Exception):
                await http.post(gate.console + "/device/anpr",
                                json={"plate": gate.shown, "confidence": 0.95},
                                headers=gate.anpr_auth)
                if gate.shown in gate.qr:
                    await http.post(gate.console + "/device/scan",
                                    json={"text": gate.qr[gate.shown]},
                                    headers=gate.scanner_auth)
        return
    if st.get("state") != "held" or not txn or txn in gate.released:
        return
    first = gate.held_since.setdefault(txn, time.monotonic())
    if not st.get("weighed"):
        return  # only a held truck with a recorded weighing may be released by hand (issue 12)
    decision = st.get("decision") or {}
    if "overload" in (decision.get("reasons") or []):
        return  # the gate never releases an overloaded truck; it must unload
    if time.monotonic() - first < HOLD_BEFORE_RELEASE_S:
        return
    gate.released.add(txn)
    with contextlib.suppress(Exception):
        # The operator logs in to the console as their own account, as at a real gate.
        if gate.operator_http is None:
            import httpx

            password = gate.logins[DEMO_OPERATOR][1]
            gate.operator_http = await alogin(httpx.AsyncClient(timeout=5), gate.console,
                                              DEMO_OPERATOR, password)
        r = await gate.operator_http.post(gate.console + "/api/override", json={
            "action": "manual_barrier_up",
            "reason": "演示：核实后人工放行 / demo: checked and released by hand"})
        if r.status_code == 401:  # the session expired or the gate restarted: log in again
            gate.operator_http = None
            gate.released.discard(txn)


# -- start-up --------------------------------------------------------------------------------


def _signer(path: Path, name: str) -> Any:
    from ledger.keys import SignerKey, read_signer_file, write_signer_file

    if path.exists():
        return read_signer_file(path)
    key = SignerKey.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_signer_file(path, key)
    return key


def _write_private(path: Path, text: str) -> None:
    write_private(path, text if text.endswith("\n") else text + "\n")


def _issuer_keys(url: str, plans: list[SitePlan], root: Any,
                 store: Any = None) -> tuple[int, str]:
    """An issuer key per enterprise (created once); the bureau-signed trust list naming them."""
    from central.db import connect
    from central.tickets.issuers import (
        create_issuer_key,
        current_trust_list,
        list_issuer_keys,
    )

    now = datetime.now(UTC)
    with connect(url, autocommit=True) as conn:
        for enterprise in sorted({p.enterprise for p in plans}):
            keys = [k for k in list_issuer_keys(conn, enterprise)
                    if k.removed_at is None and k.not_after is None]
            if not keys:
                create_issuer_key(conn, enterprise, root, now=now, store=store)
        trust = current_trust_list(conn)
    if trust is None:
        raise DemoError("the central published no e-ticket trust list; see central/tickets")
    return trust


def _prepare_database(url: str, plans: list[SitePlan],
                      site_keys: dict[str, Any]) -> dict[str, str]:
    """Migrate, enrol the sites (idempotent), create tokens; returns role → token."""
    from central.api.schemas import SiteIn
    from central.auth import create_token
    from central.db import connect, migrate
    from central.sites import SiteExistsError, enrol_site

    with connect(url) as conn:
        migrate(conn)
        for p in plans:
            key = site_keys[p.site_id].verifier.to_text()
            try:
                enrol_site(conn, SiteIn(id=p.site_id, enterprise=p.enterprise, name=p.name,
                                        lat=p.lat, lon=p.lon, verifier_key=key))
            except SiteExistsError:
                # A demo re-run over a kept database: the gates have new keys. A real
                # deployment never does this (a key change is an enrolment of its own).
                conn.execute("UPDATE sites SET verifier_key = %s WHERE id = %s",
                             (key, p.site_id))
        tokens = {
            "bureau": create_token(conn, "bureau", label="能源局值班室 (demo)")[0],
            "admin": create_token(conn, "admin", label="demo admin")[0],
            "enterprise": create_token(
                conn, "enterprise", enterprise=ENTERPRISES[0],
                label=f"{ENTERPRISE_NAMES[ENTERPRISES[0]]} (demo)")[0],
        }
        conn.commit()
    return tokens


async def _wait_http(url: str, child: Child, timeout: float, what: str) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if not child.running():
                raise DemoError(f"{what} exited with status {child.exited()} while starting; "
                                f"last lines of {child.log_path}:\n{child.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    raise DemoError(f"{what} did not answer at {url} within {timeout:.0f} s; "
                    f"see {child.log_path}:\n{child.log_tail()}")


async def _start_gate(gate: Gate, opts: DemoOptions, mqtt_port: int, desk: TicketDesk) -> None:
    ep = gate.dir / "endpoints.json"
    ep.unlink(missing_ok=True)
    # The simulator appends to the truth log; a restarted one adds to what happened before.
    truth = gate.dir / "truth.jsonl"
    gate.truth_pos = truth.stat().st_size if truth.exists() else 0
    gate.sim.start()
    deadline = time.monotonic() + 60
    while not ep.exists():
        if not gate.sim.running():
            raise DemoError(f"simulator of {gate.plan.site_id} exited while starting; "
                            f"see {gate.sim.log_path}:\n{gate.sim.log_tail()}")
        if time.monotonic() > deadline:
            raise DemoError(f"simulator of {gate.plan.site_id} wrote no endpoints in 60 s; "
                            f"see {gate.sim.log_path}")
        await asyncio.sleep(0.1)
    endpoints = json.loads(ep.read_text(encoding="utf-8"))
    # The camera's and the scanner's push secrets, and the console accounts (kept across runs).
    gate.anpr_auth = device_headers(write_push_secret(gate.dir / "anpr.secret"))
    gate.scanner_auth = device_headers(write_push_secret(gate.dir / "scanner.secret"))
    gate.logins = _demo_logins(gate.dir)
    await asyncio.to_thread(ensure_accounts, gate.dir / "accounts.sqlite", gate.logins)
    gate.operator_http = None
    _write_private(gate.dir / "site.toml", site_config_toml(
        gate.plan, endpoints, console_port=gate.console_port, mqtt_host="127.0.0.1",
        mqtt_port=mqtt_port, speed=opts.speed, mqtt_protocol=MQTT_PROTOCOL,
        mqtt_password_file=str(gate.dir / "mqtt.password"), trust_roots=gate.trust_roots,
    ))
    gate.edge.start()
    await _wait_http(gate.console + "/api/state", gate.edge, 60,
                     f"gate agent of {gate.plan.site_id}")
    gate.driver_stop = asyncio.Event()
    gate.driver = asyncio.create_task(_driver_loop(gate, desk, gate.driver_stop),
                                      name=f"driver-{gate.plan.site_id}")


DEMO_OPERATOR = "operator"
DEMO_SUPERVISOR = "supervisor"


def _demo_logins(gdir: Path) -> dict[str, tuple[str, str]]:
    """The gate's demo console accounts, name -> (role, password): random passwords made on
    the first run, kept (0600) in the site's directory so a rerun prints the same logins."""
    path = gdir / "console-logins.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return {k: (str(v[0]), str(v[1])) for k, v in saved.items()}
    logins = {DEMO_OPERATOR: ("operator", secrets.token_urlsafe(9)),
              DEMO_SUPERVISOR: ("supervisor", secrets.token_urlsafe(9))}
    _write_private(path, json.dumps(logins, ensure_ascii=False))
    return logins


async def _stop_driver(gate: Gate) -> None:
    if gate.driver is not None and gate.driver_stop is not None:
        gate.driver_stop.set()
        with contextlib.suppress(Exception):
            await gate.driver
        gate.driver = None


# -- stop ------------------------------------------------------------------------------------


def _flush_outboxes(gates: list[Gate], mqtt_port: int,
                    timeout: float) -> dict[str, tuple[int, int]]:
    """Send what the stopped gates still hold, from their ledgers; returns site → (acked, size)."""
    from edge_agent.sync.mqtt import MqttSettings
    from edge_agent.sync.outbox import Outbox
    from ledger.store import LedgerStore

    boxes = []
    for g in gates:
        path = g.dir / "ledger.sqlite"
        if not path.exists():
            continue
        settings = MqttSettings(
            port=mqtt_port, protocol=MQTT_PROTOCOL, keepalive=10, username=g.plan.site_id,
            password=(g.dir / "mqtt.password").read_text(encoding="utf-8").strip())
        store = LedgerStore.open(path, site=g.plan.site_id)
        box = Outbox(store, g.plan.site_id, settings, batch_size=200, ack_timeout=5,
                     poll_interval=0.05, checkpoint_interval=3600,
                     client_id=f"edge-{g.plan.site_id}")
        boxes.append((g.plan.site_id, store, box))
        box.start()
    deadline = time.monotonic() + timeout
    result: dict[str, tuple[int, int]] = {}
    for site, store, box in boxes:
        while box.acked_seq < store.size - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        result[site] = (box.acked_seq, store.size)
        box.stop()
        store.close()
    return result


def _central_summary(url: str, plans: list[SitePlan]) -> list[str]:
    from central.db import connect

    lines = []
    with connect(url) as conn:
        for p in plans:
            row = conn.execute(
                "SELECT s.verified_seq, (SELECT count(*) FROM entries e WHERE e.site = s.site),"
                " (SELECT count(*) FROM entries e WHERE e.site = s.site"
                "  AND e.kind = 'weighing'),"
                " (SELECT count(*) FROM alarms a WHERE a.site = s.site)"
                " FROM site_state s WHERE s.site = %s", (p.site_id,)).fetchone()
            if row:
                lines.append(f"{p.site_id}: {row[1]} 条记录 entries (verified to seq {row[0]}), "
                             f"{row[2]} 次过磅 weighings, {row[3]} 条报警 alarms")
    return lines


# -- the run ---------------------------------------------------------------------------------


async def run_demo(opts: DemoOptions) -> int:
    """Run the demo until ``opts.duration`` passes or SIGINT/SIGTERM; returns an exit status."""
    from central.db import DatabaseError, DatabaseSettings, resolve_url, stop_embedded
    from coalgate.broker import BrokerError, EmbeddedBroker, site_acls

    data = opts.data_dir.resolve()
    central_dir = data / "central"
    central_dir.mkdir(parents=True, exist_ok=True)
    plans = site_plans(opts.sites)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    loop.set_exception_handler(partial(_log_loop_error, data / "logs" / "broker.log"))

    broker: EmbeddedBroker | None = None
    central: list[Child] = []
    gates: list[Gate] = []
    db_url: str | None = None
    status = 0
    site_keys: dict[str, Any] = {}
    ticket_desk: TicketDesk | None = None
    try:
        say(f"数据目录 data directory: {data}")
        say("启动嵌入式 PostgreSQL / starting the embedded PostgreSQL …")
        try:
            db_url = await asyncio.to_thread(
                resolve_url, DatabaseSettings(url=None, data_dir=central_dir))
        except DatabaseError as exc:
            raise DemoError(str(exc)) from None
        say("生成密钥、登记站点、签发令牌 / keys, site enrolment, tokens …")
        for p in plans:
            site_keys[p.site_id] = _signer(data / "sites" / p.site_id / "site.key", p.site_id)
        tokens = await asyncio.to_thread(_prepare_database, db_url, plans, site_keys)
        say("电子煤管票：签发密钥与信任列表 / e-tickets: issuer keys and the trust list …")
        root_file = data / "keys" / "bureau-root.key"
        root = _signer(root_file, "bureau-root")
        from central.tickets.keystore import FileKeyStore

        issuer_store = FileKeyStore(central_dir / "issuer-keys")  # [tickets] issuer_key_dir
        trust_serial, trust_note = await asyncio.to_thread(_issuer_keys, db_url, plans, root,
                                                           issuer_store)
        desk = ticket_desk = TicketDesk(db_url, issuer_store)

        # Per-site broker logins and the ACL of config/mosquitto/: a gate may publish only
        # under its own topic. Fresh passwords on every run.
        passwords = {p.site_id: secrets.token_urlsafe(18) for p in plans}
        passwords["central"] = secrets.token_urlsafe(18)
        for p in plans:
            _write_private(data / "sites" / p.site_id / "mqtt.password", passwords[p.site_id])
        publish_acl, subscribe_acl = site_acls([p.site_id for p in plans])
        broker = EmbeddedBroker(opts.host, users=passwords, publish_acl=publish_acl,
                                subscribe_acl=subscribe_acl, state_dir=central_dir)
        try:
            await broker.start()
        except BrokerError as exc:
            raise DemoError(str(exc)) from None
        say(f"MQTT 代理 broker (amqtt, MQTT {MQTT_PROTOCOL}) at {broker.url}")

        api_port = opts.port or _free_port()
        # No secret in central.toml: the broker password sits in its own 0600 file.
        _write_private(central_dir / "mqtt.password", passwords["central"])
        _write_private(central_dir / "central.toml", central_config_toml(
            database_url=db_url, data_dir=str(central_dir), mqtt_host=opts.host,
            mqtt_port=broker.port, api_port=api_port, mqtt_protocol=MQTT_PROTOCOL,
            mqtt_password_file=str(central_dir / "mqtt.password"),
            root_key_file=str(root_file), issuer_key_dir=str(issuer_store.directory),
        ))
        cfg = str(central_dir / "central.toml")
        logs = data / "logs"
        ingest = Child("central ingest", [*_coalgate(), "central", "ingest", "-c", cfg],
                       logs / "central-ingest.log")
        serve = Child("central serve", [*_coalgate(), "central", "serve", "-c", cfg,
                                        "--host", opts.host, "--port", str(api_port)],
                      logs / "central-serve.log")
        # Issued and revoked tickets reach the gates' `tickets` topics (a delta per gate of
        # the ticket's loading site) only through the publisher.
        publisher = Child("central tickets", [*_coalgate(), "central", "tickets", "publish",
                                              "--config", cfg],
                          logs / "central-tickets.log")
        central = [ingest, serve, publisher]
        say("启动中心：接入、API 与电子票分发 / starting the central: ingest worker, API and the "
            "e-ticket publisher …")
        for c in central:
            c.start()
        api = f"http://{opts.host}:{api_port}"
        await _wait_http(api + "/api/v1/health", serve, 90, "central serve")

        env = {"PYTHONUNBUFFERED": "1"}
        for i, p in enumerate(plans):
            gdir = data / "sites" / p.site_id
            from edge_agent.tickets.store import TicketStore

            store = TicketStore(gdir / "tickets.sqlite")
            store.set_trust_note(trust_serial, trust_note)
            store.close()
            (gdir / "scenario.toml").write_text(scenario_toml(p, seed=i + 1), encoding="utf-8")
            port = _free_port()
            sim = Child(f"simulator {p.site_id}", [
                *_coalgate(), "sim", "run", "--scenario", str(gdir / "scenario.toml"),
                "--speed", str(opts.speed), "--repeat",
                # Trucks come once this site's gate reads its scale and polls its gate IO.
                "--wait-for", f"{p.scale_kind},gate_io_tcp",
                "--endpoints-out", str(gdir / "endpoints.json"),
                "--truth-out", str(gdir / "truth.jsonl"), "--dev-dir", str(gdir / "dev"),
            ], logs / f"sim-{p.site_id}.log")
            edge = Child(f"gate agent {p.site_id}", [
                *_coalgate(), "edge", "run", "--config", str(gdir / "site.toml"),
            ], logs / f"edge-{p.site_id}.log", env=env)
            gates.append(Gate(p, gdir, sim, edge, port, {t.plate: t for t in p.trucks},
                              trust_roots=(root.verifier.to_text(),)))
        for g in gates:
            if stop.is_set():
                break
            say(f"启动磅站 starting gate {g.plan.site_id} — {g.plan.scale_label} …")
            await _start_gate(g, opts, broker.port, desk)
        if stop.is_set():
            raise DemoError("stopped while starting (Ctrl-C)")

        info = {
            "dashboard": f"{api}/dashboard/",
            "api": f"{api}/api/v1",
            "openapi": f"{api}/openapi.json",
            "tokens": tokens,
            "mqtt": broker.url,
            "database": db_url,
            "sites": {g.plan.site_id: {"console": g.console + "/", "name": g.plan.name,
                                       "scale": g.plan.scale_label,
                                       "logins": {n: {"role": r, "password": pw}
                                                  for n, (r, pw) in g.logins.items()},
                                       "ledger": str(g.dir / "ledger.sqlite")}
                      for g in gates},
            "pid": os.getpid(),
        }
        # 0600: it holds the API tokens and the console passwords.
        _write_private(data / "demo.json", json.dumps(info, ensure_ascii=False, indent=2))
        _banner(info, opts)
        await _supervise(gates, central, opts, stop, broker.port, desk)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        status = 1
    except ChildFailed as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        say("正在停止 / stopping …")
        for g in gates:
            await _stop_driver(g)
        for g in gates:
            g.edge.stop()
        for g in gates:
            g.sim.stop()
        if broker is not None and gates and any(c.running() for c in central[:1]):
            flushed = await asyncio.to_thread(_flush_outboxes, gates, broker.port, 30)
            for site, (acked, size) in flushed.items():
                if acked < size - 1:
                    say(f"注意 note: {site} 尚有 {size - 1 - acked} 条未确认 entries not yet "
                        "acknowledged; they are sent at the next start")
        if ticket_desk is not None:
            ticket_desk.close()
        for c in reversed(central):
            c.stop()
        if db_url is not None:
            with contextlib.suppress(Exception):
                for line in await asyncio.to_thread(_central_summary, db_url, plans):
                    say(line)
        if broker is not None:
            await broker.stop()
        try:
            await asyncio.to_thread(stop_embedded, central_dir)
        except DatabaseError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            status = 1
        with contextlib.suppress(OSError):
            (data / "demo.json").unlink()
        left = [c.name for c in central + [x for g in gates for x in (g.sim, g.edge)]
                if c.running()]
        if (central_dir / "pgdata" / "postmaster.pid").exists():
            left.append("PostgreSQL")
        if left:
            print(f"error: still running after the stop: {', '.join(left)}", file=sys.stderr)
            status = 1
        else:
            say("已停止，无残留进程 / stopped; nothing left running")
    return status


def _log_loop_error(path: Path, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
    """Errors of the in-process broker's connection tasks go to its log, not the screen.

    amqtt 0.12 raises "dictionary changed size during iteration" now and then when clients
    disconnect while others connect; the session is ending anyway and nothing is lost (gates
    resend from their last ack).
    """
    exc = ctx.get("exception")
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {ctx.get('message')}: {exc!r}\n")


def _banner(info: dict[str, Any], opts: DemoOptions) -> None:
    t = info["tokens"]
    lines = [
        "",
        "  coalgate 演示已就绪 / demo ready",
        f"  能源局大屏 bureau dashboard : {info['dashboard']}",
        f"  API                         : {info['api']}  (OpenAPI {info['openapi']})",
        f"  令牌 token  bureau     : {t['bureau']}",
        f"  令牌 token  admin      : {t['admin']}",
        f"  令牌 token  enterprise : {t['enterprise']}  "
        f"({ENTERPRISES[0]} {ENTERPRISE_NAMES[ENTERPRISES[0]]})",
        "  磅房操作台 operator consoles:",
    ]
    for site, s in info["sites"].items():
        lines.append(f"    {site:<14} {s['console']:<28} {s['name']} — {s['scale']}")
        lines.append("      登录 logins: " + " · ".join(
            f"{n} / {x['password']} ({x['role']})" for n, x in s["logins"].items()))
    lines.append(f"  MQTT {info['mqtt']} · 数据 data {opts.data_dir}")
    until = (f"运行 {opts.duration:.0f} 秒 / running for {opts.duration:.0f} s"
             if opts.duration else "按 Ctrl-C 停止 / press Ctrl-C to stop")
    lines += [f"  {until}", ""]
    print("\n".join(lines), flush=True)


async def _supervise(gates: list[Gate], central: list[Child], opts: DemoOptions,
                     stop: asyncio.Event, mqtt_port: int, desk: TicketDesk) -> None:
    """Until stop or the duration: restart a crashed child (a gate as a pair), say so."""
    end = time.monotonic() + opts.duration if opts.duration else None
    while not stop.is_set():
        if end is not None and time.monotonic() >= end:
            break
        for c in central:
            if not c.running():
                say(f"警告 warning: {c.name} 退出 exited (status {c.exited()}); "
                    f"restarting. Last lines of {c.log_path}:\n{c.log_tail(8)}")
                c.restart()  # raises ChildFailed (with the log tail) when out of restarts
        for g in gates:
            if g.sim.running() and g.edge.running():
                continue
            dead = g.sim if not g.sim.running() else g.edge
            say(f"警告 warning: {dead.name} 退出 exited (status {dead.exited()}); "
                f"restarting gate {g.plan.site_id} (simulator and agent). Last lines of "
                f"{dead.log_path}:\n{dead.log_tail(8)}")
            if dead.restarts >= dead.max_restarts:
                dead.restart()  # raises ChildFailed with the log tail
            dead.restarts += 1
            await _stop_driver(g)
            g.edge.stop()
            g.sim.stop()
            await _start_gate(g, opts, mqtt_port, desk)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(
        help="Stop after this many seconds (default: run until Ctrl-C).", min=1)] = None,
    data_dir: Annotated[Path, typer.Option(
        help="Where keys, ledgers, the database and logs go; reused by the next run.")
    ] = Path("var/demo"),
    sites: Annotated[int, typer.Option(help="Number of simulated gates.", min=1, max=12)] = 3,
    speed: Annotated[float, typer.Option(
        help="Simulated seconds per real second for the trucks.", min=0.5, max=10)] = 4.0,
    port: Annotated[int, typer.Option(
        help="Port of the API and dashboard (0: any free port).", min=0, max=65535)] = 0,
) -> None:
    """Run the whole system on one machine: broker, PostgreSQL, central, simulated gates.

    Prints the dashboard URL, each operator console URL and the login tokens, then runs
    until Ctrl-C (or --duration seconds) and stops everything it started.

    Example:
        coalgate demo --duration 120 --data-dir /tmp/coalgate-demo
    """
    opts = DemoOptions(data_dir=data_dir, sites=sites, duration=duration, speed=speed,
                       port=port)
    raise SystemExit(asyncio.run(run_demo(opts)))
