"""Tonnage: net kilograms released per site and coal type over one (local) day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status

from central.api.deps import Conn, Reader, SettingsDep
from central.api.schemas import TonnageOut, TonnageRow

router = APIRouter(prefix="/tonnage", tags=["tonnage"])


@router.get("/daily", response_model=TonnageOut, summary="Net tonnage per site and coal type")
def daily(
    conn: Conn,
    user: Reader,
    settings: SettingsDep,
    day: Annotated[date | None, Query(description="YYYY-MM-DD; default: today")] = None,
) -> TonnageOut:
    """Sum of `net_kg` of released gross / one-pass weighings in the day, in the deployment's
    time zone (`timezone` in the config, default Asia/Shanghai). A load the gate held and an
    operator released by hand counts too, and is shown again in `by_hand_*`; a voided
    weighing never counts."""
    zone = ZoneInfo(settings.timezone)
    day = day or datetime.now(zone).date()
    if not date.min < day < date.max:
        # The day's bounds in UTC lie outside what a datetime can hold.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"day={day.isoformat()}: choose a day between 0001-01-02 and "
                            "9999-12-30")
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    where = ("w.pass IN ('gross', 'one_pass') AND w.voided_seq IS NULL"
             " AND (w.decision = 'release' OR w.hand_released_seq IS NOT NULL)"
             " AND w.net_kg IS NOT NULL AND w.ts >= %s AND w.ts < %s")
    args: list[Any] = [start, end]
    if not user.sees_all_sites:
        where += " AND s.enterprise = %s"
        args.append(user.enterprise)
    rows = conn.execute(
        "SELECT w.site, s.name, w.coal_type, sum(w.net_kg)::bigint, count(*),"
        " (coalesce(sum(w.net_kg) FILTER (WHERE w.decision IS DISTINCT FROM 'release'), 0)"
        ")::bigint, count(*) FILTER (WHERE w.decision IS DISTINCT FROM 'release')"
        " FROM weighings w JOIN sites s ON s.id = w.site"
        f" WHERE {where} GROUP BY w.site, s.name, w.coal_type ORDER BY w.site, w.coal_type",
        args,
    ).fetchall()
    return TonnageOut(
        day=day, timezone=settings.timezone,
        rows=[TonnageRow(site=r[0], site_name=r[1], coal_type=r[2], net_kg=r[3], trucks=r[4],
                         by_hand_net_kg=r[5], by_hand_trucks=r[6])
              for r in rows],
    )
