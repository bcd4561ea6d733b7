"""Weighings: search the projection of every verified `weighing` entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from psycopg.rows import dict_row

from central.api.deps import Conn, Reader, check_site_visible
from central.api.schemas import WeighingOut, WeighingPage, WeighingPass
from edge_agent.plates.grammar import normalise_plate

router = APIRouter(prefix="/weighings", tags=["weighings"])

_COLUMNS = (
    "site, seq, ts, txn, pass, plate, plate_conf_pm, plate_source, axles, weight_kg, gross_kg,"
    " tare_kg, net_kg, tare_source, tare_seq, ticket_id, coal_type, limit_kg, decision, reasons"
)


def _cursor(text: str) -> tuple[datetime, str, int]:
    """Keyset pagination cursor ``<ts>|<site>|<seq>`` (opaque to clients)."""
    try:
        ts, site, seq = text.rsplit("|", 2)
        return datetime.fromisoformat(ts), site, int(seq)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"before={text!r} is not a cursor; pass next_before from the previous page",
        ) from None


@router.get("", response_model=WeighingPage, response_model_by_alias=True,
            summary="Search weighings")
def search(
    conn: Conn,
    user: Reader,
    site: Annotated[str | None, Query(description="site id")] = None,
    plate: Annotated[str | None, Query(
        description="plate, e.g. 陕K12345 (normalised: 陕K·12345 finds it too)")] = None,
    ticket_id: Annotated[str | None, Query()] = None,
    txn: Annotated[str | None, Query(description="gate transaction id")] = None,
    pass_: Annotated[WeighingPass | None, Query(alias="pass")] = None,
    decision: Annotated[str | None, Query(pattern="^(release|hold)$")] = None,
    since: Annotated[datetime | None, Query(alias="from", description="ts ≥ (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="ts < (RFC 3339)")] = None,
    before: Annotated[str | None, Query(description="next_before of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WeighingPage:
    """Newest first. Enterprise tokens see their own sites only."""
    where: list[str] = []
    args: list[Any] = []
    if site is not None:
        check_site_visible(conn, user, site)
        where.append("site = %s")
        args.append(site)
    if not user.sees_all_sites:
        where.append("site IN (SELECT id FROM sites WHERE enterprise = %s)")
        args.append(user.enterprise)
    if plate is not None:
        # Gates store plates normalised: '陕K·10003' as written on the plate finds 陕K10003.
        plate = normalise_plate(plate) or plate
    for column, value in (("plate", plate), ("ticket_id", ticket_id), ("txn", txn),
                          ("pass", pass_), ("decision", decision)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if since is not None:
        where.append("ts >= %s")
        args.append(since)
    if until is not None:
        where.append("ts < %s")
        args.append(until)
    if before is not None:
        where.append("(ts, site, seq) < (%s, %s, %s)")
        args.extend(_cursor(before))
    sql = (f"SELECT {_COLUMNS} FROM weighings"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY ts DESC, site DESC, seq DESC LIMIT %s")
    args.append(limit + 1)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, args).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows and more else None
    return WeighingPage(
        items=[WeighingOut.model_validate(r) for r in rows],
        next_before=f"{last['ts'].isoformat()}|{last['site']}|{last['seq']}" if last else None,
    )
