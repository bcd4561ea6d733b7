"""Sites: enrolment (admin), list and status (every role; enterprises see their own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi import APIRouter, HTTPException, status
from psycopg.rows import dict_row

from central.api.deps import Admin, Conn, Reader, SettingsDep, check_site_visible
from central.api.schemas import ErrorOut, SiteIn, SiteOut, SiteStatusOut
from central.auth import Principal
from central.rules import GateView, stalled_for
from central.settings import RuleSettings
from central.sites import SiteExistsError, enrol_site
from central.tickets.errors import SiteNotAllowedError

router = APIRouter(prefix="/sites", tags=["sites"])

_SITE_SELECT = """
SELECT s.id, s.enterprise, s.name, s.lat, s.lon, s.verifier_key, s.loading_site, s.enrolled_at,
       coalesce(st.online, false) AS reported_online, st.last_seen, st.last_status,
       coalesce(st.verified_seq, -1) AS verified_seq, st.checkpoint_size,
       (SELECT count(*) FROM alarms a WHERE a.site = s.id AND a.state <> 'resolved')
           AS open_alarms
FROM sites s LEFT JOIN site_state st ON st.site = s.id
"""


def _site_out(row: dict[str, Any], rules: RuleSettings, now: datetime) -> SiteOut:
    last_seen = row["last_seen"]
    fresh = last_seen is not None and now - last_seen <= timedelta(seconds=rules.offline_after_s)
    last_status = row["last_status"] if isinstance(row["last_status"], dict) else {}
    gate = last_status.get("gate") if isinstance(last_status.get("gate"), dict) else None
    online = bool(row["reported_online"]) and fresh
    stalled = stalled_for(GateView(row["id"], online, gate), now, rules)
    return SiteOut(
        id=row["id"], enterprise=row["enterprise"], name=row["name"], lat=row["lat"],
        lon=row["lon"], verifier_key=row["verifier_key"], loading_site=row["loading_site"],
        enrolled_at=row["enrolled_at"],
        status=SiteStatusOut(
            online=online,
            reported_online=row["reported_online"], last_seen=last_seen,
            verified_seq=row["verified_seq"], checkpoint_size=row["checkpoint_size"],
            open_alarms=row["open_alarms"],
            gate_state=gate.get("state") if gate else None,
            stalled_min=int(stalled.total_seconds() // 60) if stalled is not None else None,
        ),
    )


def load_sites(conn: psycopg.Connection[Any], user: Principal, rules: RuleSettings,
               site: str | None = None) -> list[SiteOut]:
    where, args = [], []
    if not user.sees_all_sites:
        where.append("s.enterprise = %s")
        args.append(user.enterprise)
    if site is not None:
        where.append("s.id = %s")
        args.append(site)
    sql = _SITE_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.id"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, args).fetchall()
    now = datetime.now(UTC)
    return [_site_out(r, rules, now) for r in rows]


@router.get("", response_model=list[SiteOut], summary="List sites with their live status")
def list_sites(conn: Conn, user: Reader, settings: SettingsDep) -> list[SiteOut]:
    """Every enrolled site the token may see, with online/offline, last seen, the verified
    ledger position and the number of unresolved alarms."""
    return load_sites(conn, user, settings.rules)


@router.post("", response_model=SiteOut, status_code=status.HTTP_201_CREATED,
             responses={403: {"model": ErrorOut}, 409: {"model": ErrorOut}},
             summary="Enrol a site and its key (admin)")
def enroll(body: SiteIn, conn: Conn, user: Admin, settings: SettingsDep) -> SiteOut:
    """Enrol a gate: from now on the ingest accepts entries signed by this verifier key on the
    site's topics. Enrolment is once per site id; a second enrolment is refused with 409.
    ``loading_site`` (default: the id) is the mine whose e-tickets the gate accepts; it may not
    belong to another enterprise (403)."""
    try:
        enrol_site(conn, body)
    except SiteExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except SiteNotAllowedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    return load_sites(conn, user, settings.rules, body.id)[0]


@router.get("/{site}", response_model=SiteOut, responses={403: {"model": ErrorOut},
                                                          404: {"model": ErrorOut}},
            summary="One site and its status")
def get_site(site: str, conn: Conn, user: Reader, settings: SettingsDep) -> SiteOut:
    check_site_visible(conn, user, site)
    return load_sites(conn, user, settings.rules, site)[0]


@router.get("/{site}/status", response_model=SiteStatusOut, summary="A site's live status")
def get_status(site: str, conn: Conn, user: Reader, settings: SettingsDep) -> SiteStatusOut:
    check_site_visible(conn, user, site)
    return load_sites(conn, user, settings.rules, site)[0].status
