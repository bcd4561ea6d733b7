"""Tonnage: net kilograms released per site and coal type over one (local) day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

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
    time zone (`timezone` in the config, default Asia/Shanghai)."""
    zone = ZoneInfo(settings.timezone)
    day = day or datetime.now(zone).date()
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    where = ("w.pass IN ('gross', 'one_pass') AND w.decision = 'release'"
             " AND w.net_kg IS NOT NULL AND w.ts >= %s AND w.ts < %s")
    args: list[Any] = [start, end]
    if not user.sees_all_sites:
        where += " AND s.enterprise = %s"
        args.append(user.enterprise)
    rows = conn.execute(
        "SELECT w.site, s.name, w.coal_type, sum(w.net_kg)::bigint, count(*)"
        " FROM weighings w JOIN sites s ON s.id = w.site"
        f" WHERE {where} GROUP BY w.site, s.name, w.coal_type ORDER BY w.site, w.coal_type",
        args,
    ).fetchall()
    return TonnageOut(
        day=day, timezone=settings.timezone,
        rows=[TonnageRow(site=r[0], site_name=r[1], coal_type=r[2], net_kg=r[3], trucks=r[4])
              for r in rows],
    )
