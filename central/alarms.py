"""Alarms, the data layer: raise (idempotently), list, and the lifecycle
open → acknowledged (who, when) → resolved (note).

Functions take a psycopg connection or cursor and own no transaction, except the lifecycle
changes, which are one statement each. Raising happens inside the ingest's transaction;
the ``alarms_notify`` trigger (migration 002) tells the live stream at commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from central.rules import (
    AlarmDraft,
    GateView,
    SiteLiveness,
    is_offline,
    offline_alarms,
    stalled_alarms,
    stalled_for,
)
from central.settings import RuleSettings

__all__ = [
    "ALARM_COLUMNS",
    "AlarmError",
    "AlarmNotFound",
    "AlarmStateError",
    "AlarmRow",
    "acknowledge",
    "get_alarm",
    "list_alarms",
    "raise_alarms",
    "resolve",
    "sweep_offline",
]

ALARM_COLUMNS = (
    "id, site, code, severity, seq, txn, detail, raised_at, state, ack_by, ack_at, "
    "resolved_by, resolved_at, note"
)


class AlarmError(Exception):
    """Root of the alarm data layer's errors."""


class AlarmNotFound(AlarmError):
    pass


class AlarmStateError(AlarmError):
    """The lifecycle does not allow the change (e.g. acknowledging a resolved alarm)."""


@dataclass(frozen=True)
class AlarmRow:
    id: int
    site: str
    code: str
    severity: str
    seq: int | None
    txn: str | None
    detail: dict[str, Any]
    raised_at: datetime
    state: str
    ack_by: str | None
    ack_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None


def _row(obj: dict[str, Any]) -> AlarmRow:
    return AlarmRow(**obj)


def raise_alarms(
    cur: psycopg.Cursor[Any], drafts: Iterable[AlarmDraft], raised_at: datetime | None = None
) -> int:
    """Store drafts; a draft whose (site, dedup_key) is stored already only adds detail keys the
    stored alarm lacks (e.g. the gate confirming an escape the central derived). Returns how
    many alarms are new."""
    new = 0
    for d in drafts:
        cur.execute(
            "INSERT INTO alarms (site, code, severity, seq, txn, detail, dedup_key, raised_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))"
            " ON CONFLICT (site, dedup_key) WHERE dedup_key IS NOT NULL"
            " DO UPDATE SET detail = EXCLUDED.detail || alarms.detail"
            " RETURNING (xmax = 0) AS inserted",
            (d.site, d.code, d.severity, d.seq, d.txn, Jsonb(dict(d.detail)), d.dedup_key,
             raised_at),
        )
        row = cur.fetchone()
        if row is not None and row[0]:
            new += 1
    return new


def get_alarm(conn: psycopg.Connection[Any], alarm_id: int) -> AlarmRow:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id = %s", (alarm_id,))
        row = cur.fetchone()
    if row is None:
        raise AlarmNotFound(f"no alarm with id {alarm_id}")
    return _row(row)


def list_alarms(
    conn: psycopg.Connection[Any],
    *,
    sites: Sequence[str] | None = None,
    enterprise: str | None = None,
    states: Sequence[str] | None = None,
    codes: Sequence[str] | None = None,
    category: str | None = None,
    plate: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AlarmRow]:
    """Newest first (oldest first when ``after_id`` is given, for a stream to catch up).
    ``plate`` (already normalised) matches any plate an alarm's detail names: the weighed
    plate, the plate a typed one replaced, or the tare's plate of a mismatch."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if plate is not None:
        where.append("%s IN (detail->>'plate', detail->>'read_plate', detail->>'tare_plate')")
        args.append(plate)
    if sites is not None:
        where.append("site = ANY(%s)")
        args.append(list(sites))
    if enterprise is not None:
        where.append("site IN (SELECT id FROM sites WHERE enterprise = %s)")
        args.append(enterprise)
    if states:
        where.append("state = ANY(%s)")
        args.append(list(states))
    if codes:
        where.append("code = ANY(%s)")
        args.append(list(codes))
    if category is not None:
        # A class is a code prefix (central.rules.overrides: override_release, ...).
        where.append("starts_with(code, %s)")
        args.append(f"{category}_")
    if after_id is not None:
        where.append("id > %s")
        args.append(after_id)
    if before_id is not None:
        where.append("id < %s")
        args.append(before_id)
    order = "id ASC" if after_id is not None else "id DESC"
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {ALARM_COLUMNS} FROM alarms WHERE {' AND '.join(where)}"
            f" ORDER BY {order} LIMIT %s",
            args,
        )
        return [_row(r) for r in cur.fetchall()]


def acknowledge(conn: psycopg.Connection[Any], alarm_id: int, who: str) -> AlarmRow:
    """open → acknowledged by ``who`` now. Acknowledging twice keeps the first who/when."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE alarms SET state = 'acknowledged', ack_by = %s, ack_at = now()"
            f" WHERE id = %s AND state = 'open' RETURNING {ALARM_COLUMNS}",
            (who, alarm_id),
        )
        row = cur.fetchone()
    if row is not None:
        return _row(row)
    current = get_alarm(conn, alarm_id)
    if current.state == "acknowledged":
        return current
    raise AlarmStateError(f"alarm {alarm_id} is {current.state}; only an open alarm can be "
                          "acknowledged")


def resolve(conn: psycopg.Connection[Any], alarm_id: int, who: str, note: str) -> AlarmRow:
    """open or acknowledged → resolved with a note. An open alarm is acknowledged on the way,
    by the same person, so every resolved alarm says who took it on and when."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE alarms SET state = 'resolved', resolved_by = %s, resolved_at = now(),"
            " note = %s, ack_by = coalesce(ack_by, %s), ack_at = coalesce(ack_at, now())"
            f" WHERE id = %s AND state <> 'resolved' RETURNING {ALARM_COLUMNS}",
            (who, note, who, alarm_id),
        )
        row = cur.fetchone()
    if row is not None:
        return _row(row)
    get_alarm(conn, alarm_id)  # raises AlarmNotFound
    raise AlarmStateError(f"alarm {alarm_id} is already resolved")


def sweep_offline(conn: psycopg.Connection[Any], now: datetime, rules: RuleSettings) -> int:
    """Raise site_offline for sites silent too long; resolve those whose site is back.

    Safe to run from several API instances at once (dedup keys). Returns new alarms raised.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "SELECT s.id, st.last_seen, s.enrolled_at FROM sites s"
            " LEFT JOIN site_state st ON st.site = s.id"
        )
        views = [SiteLiveness(site=r[0], last_seen=r[1], enrolled_at=r[2]) for r in cur]
        new = raise_alarms(cur, offline_alarms(views, now, rules), raised_at=now)
        back = [v.site for v in views if not is_offline(v, now, rules)]
        if back:
            cur.execute(
                "UPDATE alarms SET state = 'resolved', resolved_by = 'central',"
                " resolved_at = %s, note = 'site back online'"
                " WHERE code = 'site_offline' AND state <> 'resolved' AND site = ANY(%s)",
                (now, back),
            )
        new += _sweep_stalled(cur, now, rules, {v.site for v in views if v.site not in back})
    return new


def _sweep_stalled(cur: psycopg.Cursor[Any], now: datetime, rules: RuleSettings,
                   offline: set[str]) -> int:
    """gate_stalled from each online site's status heartbeat; resolved once the gate moves."""
    cur.execute("SELECT site, online, last_status FROM site_state")
    views = [GateView(site=r[0], online=bool(r[1]) and r[0] not in offline,
                      gate=(r[2] or {}).get("gate") if isinstance(r[2], dict) else None)
             for r in cur.fetchall()]
    new = raise_alarms(cur, stalled_alarms(views, now, rules), raised_at=now)
    moving = [v.site for v in views if stalled_for(v, now, rules) is None]
    if moving:
        cur.execute(
            "UPDATE alarms SET state = 'resolved', resolved_by = 'central',"
            " resolved_at = %s, note = 'gate weighing again'"
            " WHERE code = 'gate_stalled' AND state <> 'resolved' AND site = ANY(%s)",
            (now, moving),
        )
    return new
