"""Alarms: list, acknowledge, resolve, and the live stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from central import alarms as data
from central.api.deps import AlarmHandler, AlarmReader, Conn, check_site_visible
from central.api.schemas import AlarmOut, ErrorOut, ResolveIn
from central.auth import Principal
from central.plates import Plate

router = APIRouter(prefix="/alarms", tags=["alarms"])

AlarmState = Annotated[list[str] | None, Query(
    description="filter by state (repeatable): open, acknowledged, resolved")]


def _out(row: data.AlarmRow) -> AlarmOut:
    return AlarmOut.model_validate(row, from_attributes=True)


def _visible(conn: Conn, user: Principal, alarm_id: int) -> data.AlarmRow:
    try:
        row = data.get_alarm(conn, alarm_id)
    except data.AlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    check_site_visible(conn, user, row.site)
    return row


@router.get("", response_model=list[AlarmOut], summary="List alarms, newest first")
def list_alarms(
    conn: Conn,
    user: AlarmReader,
    state: AlarmState = None,
    site: str | None = None,
    code: Annotated[list[str] | None, Query(description="alarm code (repeatable)")] = None,
    category: Annotated[Literal["override"] | None, Query(
        description="alarm class: `override` = every operator override (codes `override_*`: "
                    "hand release, open lane, typed plate, void)")] = None,
    plate: Annotated[Plate | None, Query(
        description="alarms naming this plate (weighed, typed-over or tare plate); normalised "
                    "first (陕k·12345 finds 陕K12345), not a plate -> 422")] = None,
    before_id: Annotated[int | None, Query(description="page: ids below this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlarmOut]:
    for s in state or ():
        if s not in ("open", "acknowledged", "resolved"):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"state={s!r}: choose open, acknowledged or resolved")
    if site is not None:
        check_site_visible(conn, user, site)
    rows = data.list_alarms(
        conn, sites=[site] if site else None,
        enterprise=None if user.sees_all_sites else user.enterprise,
        states=state, codes=code, category=category, plate=plate, before_id=before_id,
        limit=limit,
    )
    return [_out(r) for r in rows]


@router.get("/stream", summary="Live stream of new alarms (Server-Sent Events)",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: alarm`, `id: <alarm id>`, "
                                            "`data: <AlarmOut JSON>`"}})
async def stream(
    request: Request,
    user: AlarmReader,
    last_event_id: Annotated[int | None, Header(description="resume after this alarm id")] = None,
    after_id: Annotated[int | None, Query(description="resume after this alarm id")] = None,
) -> EventSourceResponse:
    """New alarms as they are committed, each as an `alarm` event whose id is the alarm id.
    Reconnect with `Last-Event-ID` (browsers do this) or `after_id` to miss nothing."""
    app = request.app
    pool = app.state.pool
    broadcaster = app.state.broadcaster
    ping = app.state.settings.api.sse_ping_s
    enterprise = None if user.sees_all_sites else user.enterprise

    def newest_id() -> int:
        with pool.connection() as conn:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM alarms").fetchone()
            return int(row[0])

    def fetch(after: int) -> list[data.AlarmRow]:
        with pool.connection() as conn:
            return data.list_alarms(conn, enterprise=enterprise, after_id=after, limit=500)

    start = last_event_id if last_event_id is not None else after_id
    last = start if start is not None else await run_in_threadpool(newest_id)
    wake = broadcaster.subscribe()

    async def events() -> AsyncIterator[dict[str, str]]:
        nonlocal last
        try:
            yield {"event": "ready", "data": json.dumps({"after_id": last})}
            while True:
                for row in await run_in_threadpool(fetch, last):
                    last = max(last, row.id)
                    yield {"event": "alarm", "id": str(row.id),
                           "data": _out(row).model_dump_json()}
                wake.clear()
                # Wake on a notification, or anyway after `ping` seconds to catch up.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=ping)
        finally:
            broadcaster.unsubscribe(wake)

    return EventSourceResponse(events(), ping=max(1, round(ping)))


@router.get("/{alarm_id}", response_model=AlarmOut, responses={404: {"model": ErrorOut}})
def get_alarm(alarm_id: int, conn: Conn, user: AlarmReader) -> AlarmOut:
    return _out(_visible(conn, user, alarm_id))


@router.post("/{alarm_id}/ack", response_model=AlarmOut,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
             summary="Acknowledge an alarm (bureau, admin)")
def acknowledge(alarm_id: int, conn: Conn, user: AlarmHandler) -> AlarmOut:
    """open → acknowledged, recording who and when. Acknowledging again is harmless."""
    _visible(conn, user, alarm_id)
    try:
        return _out(data.acknowledge(conn, alarm_id, user.name))
    except data.AlarmStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.post("/{alarm_id}/resolve", response_model=AlarmOut,
             responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
             summary="Resolve an alarm with a note (bureau, admin)")
def resolve(alarm_id: int, body: ResolveIn, conn: Conn, user: AlarmHandler) -> AlarmOut:
    """open or acknowledged → resolved, with a note saying what was found and done."""
    _visible(conn, user, alarm_id)
    try:
        return _out(data.resolve(conn, alarm_id, user.name, body.note))
    except data.AlarmStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
