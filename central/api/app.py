"""The central's HTTP service: ``create_app(settings)`` builds the FastAPI application.

Stateless apart from its database pool, so any number of instances can run behind a load
balancer. Routers live under /api/v1; the bureau dashboard is served from /dashboard/; the
OpenAPI document is at /openapi.json. More routers (e.g. e-ticket issuance) plug in through
``create_app(settings, routers=[...])`` or ``app.include_router`` before startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from central import db
from central.alarms import sweep_offline
from central.api import limits
from central.api.routers import alarms, proofs, sites, tokens, tonnage, weighings
from central.api.stream import AlarmBroadcaster
from central.settings import Settings

__all__ = ["API_PREFIX", "DASHBOARD_DIR", "create_app"]

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Keep FastAPI's machine-readable list, and add one line a person can read.
    return JSONResponse(
        status_code=422,
        content={
            "message": f"invalid request: {_validation_message(exc)}",
            "detail": [{"type": e.get("type"), "loc": list(e.get("loc", ())),
                        "msg": e.get("msg")} for e in exc.errors()],
        },
    )


async def _sweep_forever(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    pool: ConnectionPool = app.state.pool

    def sweep() -> int:
        with pool.connection() as conn:
            return sweep_offline(conn, datetime.now(UTC), settings.rules)

    while True:
        try:
            await run_in_threadpool(sweep)
        except Exception:  # keep sweeping: a database blip must not end offline detection
            log.exception("offline sweep failed")
        await asyncio.sleep(settings.api.offline_sweep_s)


def create_app(
    settings: Settings,
    *,
    url: str | None = None,
    routers: Sequence[APIRouter] = (),
    sweep_offline_sites: bool = True,
) -> FastAPI:
    """The API application. ``url`` overrides the database from ``settings`` (tests, demo)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dsn: str = url if url else await run_in_threadpool(db.resolve_url,
                                                           settings.ingest.database)
        with db.connect(dsn) as conn:
            db.migrate(conn)
        pool = ConnectionPool(dsn, min_size=settings.api.pool_min,
                              max_size=settings.api.pool_max, open=False)
        await run_in_threadpool(pool.open, True, 10.0)
        app.state.pool = pool
        broadcaster = AlarmBroadcaster(dsn)
        broadcaster.start()
        app.state.broadcaster = broadcaster
        sweeper = (asyncio.create_task(_sweep_forever(app), name="offline-sweep")
                   if sweep_offline_sites else None)
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await broadcaster.stop()
            await run_in_threadpool(pool.close)

    app = FastAPI(
        title="coalgate central API",
        version="1",
        summary="Verified weighings, alarms, sites and ledger proofs of every coal gate",
        description="Authenticate with `Authorization: Bearer <token>`; see docs/api.md.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their code from a CDN; the central serves no external
        # assets, so only the OpenAPI document itself is published.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    limits.install(app, max_bytes=settings.api.max_body_bytes, api_prefix=API_PREFIX)
    for router in (sites.router, weighings.router, alarms.router, proofs.router,
                   tonnage.router, tokens.router, *routers):
        app.include_router(router, prefix=API_PREFIX)
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @app.get(f"{API_PREFIX}/health", tags=["health"], summary="Liveness (no token needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
