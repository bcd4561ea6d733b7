"""FastAPI app of the operator console: state, live updates (SSE), overrides, slips, and the
HTTP inputs some devices push to (ANPR camera results, keyboard-wedge QR scans)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from edge_agent.camera import snapshot_path
from edge_agent.console.anpr import AnprFormatError, parse_anpr
from edge_agent.console.slip import render_slip
from edge_agent.gate import Operator, OperatorRefused, PlateRead, TicketScan
from edge_agent.plates.grammar import normalise_plate

if TYPE_CHECKING:
    from edge_agent.runtime import Agent

STATIC = Path(__file__).parent / "static"


class OverrideIn(BaseModel):
    action: Literal["manual_plate", "manual_barrier_up", "void"]
    operator: Annotated[str, Field(min_length=1, max_length=40)]
    reason: Annotated[str, Field(min_length=2, max_length=200)]
    plate: Annotated[str, Field(max_length=16)] | None = None
    txn: str | None = None


class ScanIn(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=4096)]


def create_app(agent: Agent) -> FastAPI:
    app = FastAPI(title="coalgate gate console", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

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
    async def events() -> EventSourceResponse:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        agent.listeners.add(q)

        async def gen() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "state", "data": json.dumps(agent.snapshot(), ensure_ascii=False)}
                while True:
                    snap = await q.get()
                    yield {"event": "state", "data": json.dumps(snap, ensure_ascii=False)}
            finally:
                agent.listeners.discard(q)

        return EventSourceResponse(gen(), ping=10)

    @app.post("/api/override")
    async def override(body: OverrideIn) -> dict[str, Any]:
        if body.action == "manual_plate" and (not body.plate or normalise_plate(body.plate)
                                              is None):
            raise HTTPException(422, detail=f"{body.plate!r} is not a valid plate: province "
                                "character, office letter, 5 letters or digits (6 on new-energy "
                                "plates), no I or O, e.g. 陕K12345")
        op = Operator(body.action, body.operator.strip(), body.reason.strip(),
                      plate=body.plate, txn=body.txn)
        try:
            await agent.operator(op)
        except OperatorRefused as exc:
            raise HTTPException(409, detail=str(exc)) from None
        return {"ok": True, "state": agent.snapshot()}

    @app.post("/api/anpr")
    async def anpr(request: Request) -> dict[str, Any]:
        # Our own simple JSON or a Vzenith AlarmInfoPlate push (edge_agent/console/anpr.py).
        # The reply never carries Vzenith's {"Response_AlarmInfoPlate": {"info": "ok"}}: that
        # would make the camera open the barrier itself, bypassing the gate's decision.
        if not agent.cfg.camera.anpr_push:
            raise HTTPException(403, detail="ANPR push is disabled (camera.anpr_push = false)")
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

    @app.post("/api/scan")
    async def scan(body: ScanIn) -> dict[str, bool]:
        from edge_agent.devices.scanner import clean_scan

        text = clean_scan(body.text.encode())
        if text:
            agent.emit(TicketScan(text))
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


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The agent owns SIGTERM/SIGINT (clean stop); uvicorn must not take them over.
        yield


async def serve(agent: Agent, host: str, port: int) -> tuple[uvicorn.Server, int]:
    config = uvicorn.Config(create_app(agent), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = _Server(config)
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, int(bound)
