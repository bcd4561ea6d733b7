"""FastAPI app of the operator console: login, state, live updates (SSE), overrides, slips,
and the device endpoints the ANPR camera and a network QR scanner push to.

Who may do what is decided in two places: :mod:`edge_agent.console.guard` (before any route:
body size, Host/Origin, JSON-only, session + anti-CSRF token, device secrets) and
:data:`ACTION_ROLES` here (which role may take which override).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import h11
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge_agent.accounts import AccountStore
from edge_agent.camera import snapshot_path
from edge_agent.config import read_secret
from edge_agent.console.anpr import AnprFormatError, parse_anpr
from edge_agent.console.auth import LogBudget, LoginLimiter, Session, SessionBook
from edge_agent.console.guard import SESSION_COOKIE, Guard
from edge_agent.console.slip import render_slip
from edge_agent.gate import Operator, OperatorRefused, PlateRead, TicketScan
from edge_agent.plates.grammar import normalise_plate

if TYPE_CHECKING:
    from edge_agent.runtime import Agent

STATIC = Path(__file__).parent / "static"


# Which role may take which override. A void takes a weighing out of the counted record and
# open_lane raises the barrier with nobody weighed: both are a supervisor's call.
ACTION_ROLES: dict[str, frozenset[str]] = {
    "manual_plate": frozenset({"operator", "supervisor"}),
    "manual_barrier_up": frozenset({"operator", "supervisor"}),
    "void": frozenset({"supervisor"}),
    "open_lane": frozenset({"supervisor"}),
}


class OverrideIn(BaseModel):
    # The operator is the logged-in account, never a typed name: no "operator" field.
    model_config = {"extra": "forbid"}
    action: Literal["manual_plate", "manual_barrier_up", "void", "open_lane"]
    reason: Annotated[str, Field(min_length=2, max_length=200)]
    plate: Annotated[str, Field(max_length=16)] | None = None
    txn: Annotated[str, Field(max_length=80)] | None = None


class ScanIn(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4096)]


class LoginIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=32)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


def _session(request: Request) -> Session:
    s = getattr(request.state, "session", None)
    if s is None:  # the guard lets no state-changing request through without one
        raise HTTPException(401, detail="log in first (请先登录)")
    return cast(Session, s)


def create_app(agent: Agent) -> FastAPI:
    con = agent.cfg.console
    app = FastAPI(title="coalgate gate console", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    sessions = SessionBook(idle_s=con.session_idle_s, max_s=con.session_max_s)
    limiter = LoginLimiter()
    throttle_log = LogBudget()  # a locked-out guesser must not flood the log either
    accounts = AccountStore(con.accounts)
    hashing = asyncio.Semaphore(1)  # one argon2 evaluation at a time: 64 MiB each
    secrets = {
        "anpr": (read_secret(agent.cfg.camera.push_secret_file)
                 if agent.cfg.camera.push_secret_file and agent.cfg.camera.anpr_push else None),
        "scan": (read_secret(agent.cfg.scanner.push_secret_file)
                 if agent.cfg.scanner.push_secret_file else None),
    }
    app.state.sessions = sessions
    app.add_middleware(
        cast(Any, Guard), sessions=sessions, bind_host=con.host,
        allowed_hosts=list(con.allowed_hosts), max_body=con.max_body_kib * 1024,
        login_for_reads=con.login_for_reads, tls=con.tls, device_secrets=secrets,
        log=agent.log, account_stamp=accounts.stamp)

    @app.get("/login", response_class=HTMLResponse)
    def login_page() -> str:
        text = (STATIC / "login.html").read_text(encoding="utf-8")
        return text.replace("{{LANG}}", con.language)

    @app.get("/api/session")
    def session_info(request: Request) -> JSONResponse:
        s: Session | None = getattr(request.state, "session", None)
        body = {"name": s.name, "role": s.role, "csrf": s.csrf} if s else {"name": None}
        return JSONResponse({**body, "reads_need_login": con.login_for_reads,
                             "idle_s": con.session_idle_s},
                            headers={"Cache-Control": "no-store"})

    def throttled(name: str, ip: str) -> None:
        wait = limiter.retry_after(name, ip, time.monotonic())
        if wait <= 0:
            return
        held = throttle_log.take(ip, time.monotonic())
        if held >= 0:
            agent.log("console login throttled", level="warning", name=name, ip=ip,
                      **({"suppressed": held} if held else {}))
        raise HTTPException(429, detail=f"too many failed logins; try again in "
                            f"{int(wait) + 1} s (登录失败次数过多，请稍后再试)",
                            headers={"Retry-After": str(int(wait) + 1)})

    @app.post("/api/login")
    async def login(body: LoginIn, request: Request) -> JSONResponse:
        ip = request.client.host if request.client else "?"
        throttled(body.name, ip)  # cheap refusal before queueing for the hash
        async with hashing:
            # Checked again, and the failure counted, while holding the one hashing slot:
            # otherwise 30 guesses sent at once all pass the check above before the first
            # failure is counted, and every one of them is tried (issue 12 attack review).
            throttled(body.name, ip)
            acct = await asyncio.to_thread(accounts.verify, body.name, body.password)
            if acct is None:
                limiter.failed(body.name, ip, time.monotonic())
            else:
                limiter.succeeded(body.name)
                stamp = accounts.stamp(acct.name)  # after verify: it may have rehashed
        if acct is None:
            agent.log("console login failed", level="warning", name=body.name, ip=ip)
            raise HTTPException(401, detail="wrong account name or password (账号或密码错误)")
        s = sessions.create(acct.name, acct.role, time.monotonic(), stamp)
        agent.log("console login", name=acct.name, role=acct.role, ip=ip)
        resp = JSONResponse({"name": s.name, "role": s.role, "csrf": s.csrf},
                            headers={"Cache-Control": "no-store"})
        # No max_age: the browser forgets it when closed; the gate expires it on its own clock.
        resp.set_cookie(SESSION_COOKIE, s.token, httponly=True, samesite="strict",
                        secure=con.tls, path="/")
        return resp

    @app.post("/api/logout")
    async def logout(request: Request) -> JSONResponse:
        s = _session(request)
        sessions.drop(s.token)
        agent.log("console logout", name=s.name)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=con.tls)
        return resp

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        text = (STATIC / "index.html").read_text(encoding="utf-8")
        # Today's rows are rendered here too, so the table is there before any script runs.
        return text.replace("{{LANG}}", agent.cfg.console.language).replace(
            '<tbody id="rows"></tbody>', f'<tbody id="rows">{_rows_html(agent.recent)}</tbody>'
        )

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return agent.snapshot()

    @app.get("/api/transactions")
    def transactions() -> list[dict[str, Any]]:
        return list(reversed(agent.recent))

    @app.get("/api/events")
    async def events(request: Request) -> EventSourceResponse:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        agent.listeners.add(q)
        s: Session | None = getattr(request.state, "session", None)

        async def gen() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "state", "data": json.dumps(agent.snapshot(), ensure_ascii=False)}
                while True:
                    try:
                        snap = await asyncio.wait_for(q.get(), 5)
                    except TimeoutError:
                        snap = None
                    if con.login_for_reads and (
                            s is None or sessions.get(s.token, time.monotonic(), touch=False)
                            is None or accounts.stamp(s.name) != s.stamp):
                        return  # the session expired (or its account changed): so does this
                    if snap is not None:
                        yield {"event": "state", "data": json.dumps(snap, ensure_ascii=False)}
            finally:
                agent.listeners.discard(q)

        return EventSourceResponse(gen(), ping=10)

    @app.post("/api/override")
    async def override(body: OverrideIn, request: Request) -> dict[str, Any]:
        s = _session(request)
        if s.role not in ACTION_ROLES[body.action]:
            agent.log("override refused: role", level="warning", name=s.name, role=s.role,
                      action=body.action)
            raise HTTPException(403, detail=f"{body.action} needs the role "
                                f"{' or '.join(sorted(ACTION_ROLES[body.action]))}; "
                                f"{s.name} is {s.role} (权限不足)")
        if body.action == "manual_plate" and (not body.plate or normalise_plate(body.plate)
                                              is None):
            raise HTTPException(422, detail=f"{body.plate!r} is not a valid plate: province "
                                "character, office letter, 5 letters or digits (6 on new-energy "
                                "plates), no I or O, e.g. 陕K12345")
        op = Operator(body.action, s.name, body.reason.strip(),
                      plate=body.plate, txn=body.txn, role=s.role)
        try:
            await agent.operator(op)
        except OperatorRefused as exc:
            raise HTTPException(409, detail=str(exc)) from None
        return {"ok": True, "state": agent.snapshot()}

    @app.post("/api/scan")
    async def scan(body: ScanIn, request: Request) -> dict[str, bool]:
        """The keyboard-wedge scanner typing into the logged-in console page."""
        _session(request)
        _scanned(agent, body.text)
        return {"ok": True}

    # Device pushes: the guard has checked the device's secret (header or last path segment).
    @app.post("/device/anpr")
    @app.post("/device/anpr/{secret}")
    async def anpr(request: Request) -> dict[str, Any]:
        # Our own simple JSON or a Vzenith AlarmInfoPlate push (edge_agent/console/anpr.py).
        # The reply never carries Vzenith's {"Response_AlarmInfoPlate": {"info": "ok"}}: that
        # would make the camera open the barrier itself, bypassing the gate's decision.
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(422, detail=f"ANPR push is not JSON: {exc}") from None
        try:
            push = parse_anpr(payload)
        except AnprFormatError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        agent.emit(PlateRead(push.plate, push.conf_pm, "anpr", camera=push.camera,
                             axles=push.axles, seen_ms=push.seen_ms))
        return {"ok": True, "plate": push.plate}

    @app.post("/device/scan")
    @app.post("/device/scan/{secret}")
    async def device_scan(request: Request) -> dict[str, bool]:
        try:
            body = ScanIn.model_validate_json(await request.body())
        except ValueError as exc:
            raise HTTPException(422, detail=f"send {{\"text\": \"<the scanned code>\"}}: "
                                f"{exc}") from None
        _scanned(agent, body.text)
        return {"ok": True}

    @app.get("/slip/{seq}", response_class=HTMLResponse)
    async def slip(seq: int) -> str:
        # async on purpose: the ledger's SQLite connection belongs to the event-loop thread.
        if not 0 <= seq < agent.store.size:
            raise HTTPException(404, detail=f"no ledger entry {seq}")
        se = agent.store.get(seq)
        if se.entry.kind != "weighing":
            raise HTTPException(404, detail=f"entry {seq} is a {se.entry.kind}, not a weighing")
        return render_slip(agent.cfg.site.id, agent.cfg.site.name, seq, se.entry.ts,
                           se.entry.body, se.hash)

    @app.get("/api/snapshot.jpg")
    async def snapshot() -> Response:
        url = agent.cfg.camera.snapshot_url
        if not url:
            raise HTTPException(404, detail="no camera configured (camera.snapshot_url)")
        import httpx

        try:
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(url)
        except httpx.HTTPError as exc:
            raise HTTPException(502, detail=f"camera unreachable: {exc}") from None
        return Response(r.content, media_type="image/jpeg")

    @app.get("/api/snapshots/{name}")
    async def kept_snapshot(name: str) -> Response:
        """A plate-read snapshot kept under the data dir, by the hash the ledger records."""
        try:
            path = snapshot_path(agent.snapshot_dir, name.removesuffix(".jpg"))
        except ValueError as exc:
            raise HTTPException(404, detail=str(exc)) from None
        if not path.exists():
            raise HTTPException(404, detail=f"no snapshot {name} in {agent.snapshot_dir}")
        return Response(path.read_bytes(), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=86400, immutable"})

    @app.exception_handler(ValueError)
    async def bad_value(_: Any, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app


def _scanned(agent: Agent, raw: str) -> None:
    from edge_agent.devices.scanner import clean_scan

    text = clean_scan(raw.encode())
    if text:
        agent.emit(TicketScan(text))


def _rows_html(rows: list[dict[str, Any]]) -> str:
    def kg(v: Any) -> str:
        return "—" if v is None else f"{int(v):,} kg"

    out = []
    for r in reversed(rows):
        cells = [r.get("time"), r.get("txn"), r.get("plate"), r.get("pass"), kg(r.get("gross_kg")),
                 kg(r.get("tare_kg")), kg(r.get("net_kg")),
                 "放行" if r.get("decision") == "release" else "扣留"]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        link = f'<a href="/slip/{int(r["seq"])}" target="_blank">打印</a>'
        out.append(f"<tr>{tds}<td>{link}</td></tr>")
    return "".join(out)


# Connections the console holds at once, and how long a request may take to arrive in full.
# Beyond the cap a new connection is closed at once; an unfinished request at its deadline.
# Both keep the gate's own file descriptors (ledger, scale, MQTT) safe from a LAN flood of
# half-open connections (attack review: 1,100 of them exhausted a 1,024-file limit).
MAX_CONNECTIONS = 256
REQUEST_DEADLINE_S = 10.0


class _BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a deadline for each request to have
    arrived (headers and body); an answered request's stream (SSE) is not limited."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:
            self._disarm()
        else:
            self._arm()  # the next request on a kept-alive connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(REQUEST_DEADLINE_S, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The agent owns SIGTERM/SIGINT (clean stop); uvicorn must not take them over.
        yield


async def serve(agent: Agent, host: str, port: int) -> tuple[uvicorn.Server, int]:
    con = agent.cfg.console
    # No access log: device secrets may ride in the URL path (Vzenith push).
    config = uvicorn.Config(create_app(agent), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", ssl_certfile=con.tls_cert,
                            ssl_keyfile=con.tls_key, h11_max_incomplete_event_size=16 * 1024,
                            http=_BoundedH11)
    server = _Server(config)
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, int(bound)
