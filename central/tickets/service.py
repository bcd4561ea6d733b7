"""E-tickets at the central, the data layer: issue, void, read, list; quota and its policy.

Functions take a psycopg connection and a ``now``; multi-statement changes run in their own
transaction (a savepoint inside the caller's). Quota decisions are the pure rules of
``central.tickets.rules``; this module only loads the facts and stores the outcome. A change
that gates must learn (issued, voided) queues its delta in ``ticket_outbox`` in the same
transaction, so a delta is never lost nor sent for a change that rolled back.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from central.tickets.distribution import enqueue_loading_site
from central.tickets.errors import (
    QuotaRefusedError,
    TicketInputError,
    TicketNotFoundError,
    TicketStateError,
)
from central.tickets.issuers import active_signer, check_enterprise_id
from central.tickets.keystore import IssuerKeyStore
from central.tickets.rules import QuotaPolicy, QuotaStatus, decide_issuance
from central.tickets.sites import check_issuing_site
from edge_agent.plates.grammar import normalise_plate
from ledger.ticket import CHINA_OFFSET, Ticket, default_quota_period, issue_ticket
from ledger.ticket_errors import TicketFormatError
from ledger.ticket_qr import make_qr
from ledger.trust import format_time

__all__ = [
    "IssueRequest",
    "TicketRecord",
    "TicketUseRow",
    "QuotaRow",
    "issue",
    "void",
    "get_ticket",
    "get_by_page_token",
    "list_tickets",
    "get_policy",
    "set_policy",
    "set_capacity",
    "quota_status",
    "quota_overview",
]

# Alphanumeric capacity of a version-12 QR code at level Q (docs/tickets.md §5). base45 is
# all alphanumeric, so a length check is exact and 1000× cheaper than building the code.
_QR_V12_Q_CHARS = 296
PERIOD_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _ts(dt: datetime | None) -> str | None:
    return None if dt is None else format_time(dt)


@dataclass(frozen=True)
class IssueRequest:
    """What a sales office fills in for one truck trip."""

    enterprise: str
    site: str
    plate: str
    buyer: str
    destination: str
    coal_type: str
    planned_net_kg: int
    valid_from: datetime | None = None  # default: now
    valid_to: datetime | None = None  # default: valid_from + settings.default_validity
    quota_period: str | None = None  # default: the month of issue in China time
    buyer_name: str | None = None  # full registered names, shown on pages (not in the QR)
    destination_name: str | None = None


@dataclass(frozen=True)
class TicketUseRow:
    site: str
    seq: int
    ts: datetime
    txn: str | None = None
    gross_kg: int | None = None
    tare_kg: int | None = None
    net_kg: int | None = None
    axles: int | None = None
    plate: str | None = None
    decision: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "seq": self.seq, "ts": _ts(self.ts), "txn": self.txn,
                "gross_kg": self.gross_kg, "tare_kg": self.tare_kg, "net_kg": self.net_kg,
                "axles": self.axles, "plate": self.plate, "decision": self.decision}


@dataclass(frozen=True)
class TicketRecord:
    id: str
    enterprise: str
    site: str
    plate: str
    buyer: str
    destination: str
    coal_type: str
    buyer_name: str | None
    destination_name: str | None
    planned_net_kg: int
    quota_period: str
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime
    kid: str
    qr: str
    page_token: str
    issued_by: str
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None
    uses: tuple[TicketUseRow, ...] = field(default=())

    def state(self, now: datetime) -> str:
        """voided, used, expired, not_yet_valid or valid — in that precedence."""
        if self.voided_at is not None:
            return "voided"
        if self.uses:
            return "used"
        if now >= self.valid_to:
            return "expired"
        if now < self.valid_from:
            return "not_yet_valid"
        return "valid"

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "ticket_id": self.id, "enterprise": self.enterprise, "site": self.site,
            "plate": self.plate, "buyer": self.buyer, "destination": self.destination,
            "coal_type": self.coal_type, "buyer_name": self.buyer_name,
            "destination_name": self.destination_name, "planned_net_kg": self.planned_net_kg,
            "quota_period": self.quota_period, "valid_from": _ts(self.valid_from),
            "valid_to": _ts(self.valid_to), "issued_at": _ts(self.issued_at), "kid": self.kid,
            "qr": self.qr, "page_token": self.page_token, "issued_by": self.issued_by,
            "state": self.state(now), "voided_at": _ts(self.voided_at),
            "voided_by": self.voided_by, "void_reason": self.void_reason,
            "uses": [u.to_json() for u in self.uses],
        }


_COLUMNS = (
    "id, enterprise, site, plate, buyer, destination, coal_type, buyer_name, destination_name,"
    " planned_net_kg, quota_period, valid_from, valid_to, issued_at, kid, qr, page_token,"
    " issued_by, voided_at, voided_by, void_reason"
)


# -- quota policy and capacity ----------------------------------------------------------------

def get_policy(conn: psycopg.Connection[Any], enterprise: str | None = None) -> QuotaPolicy:
    """The enterprise's policy, else the deployment default ('*'), else monitor."""
    row = conn.execute(
        "SELECT policy FROM ticket_quota_policy WHERE scope = ANY(%s)"
        " ORDER BY (scope = '*') LIMIT 1",
        ([enterprise or "*", "*"],),
    ).fetchone()
    return "enforce" if row is not None and row[0] == "enforce" else "monitor"


def set_policy(conn: psycopg.Connection[Any], scope: str, policy: str, who: str) -> None:
    if policy not in ("monitor", "enforce"):
        raise TicketInputError(f"quota policy {policy!r} must be 'monitor' or 'enforce'")
    if scope != "*":
        check_enterprise_id(scope)
    conn.execute(
        "INSERT INTO ticket_quota_policy (scope, policy, updated_by) VALUES (%s, %s, %s)"
        " ON CONFLICT (scope) DO UPDATE SET policy = EXCLUDED.policy,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()",
        (scope, policy, who),
    )


def check_period(period: str) -> None:
    if not PERIOD_RE.fullmatch(period):
        raise TicketInputError(f"period {period!r} must be a month as YYYY-MM, e.g. 2026-11")


def set_capacity(
    conn: psycopg.Connection[Any], enterprise: str, period: str, capacity_kg: int, who: str
) -> None:
    check_enterprise_id(enterprise)
    check_period(period)
    if isinstance(capacity_kg, bool) or not isinstance(capacity_kg, int) or capacity_kg < 0:
        raise TicketInputError(f"capacity {capacity_kg!r} must be a whole number of kg ≥ 0")
    conn.execute(
        "INSERT INTO ticket_capacity (enterprise, period, capacity_kg, updated_by)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (enterprise, period) DO UPDATE"
        " SET capacity_kg = EXCLUDED.capacity_kg, updated_by = EXCLUDED.updated_by,"
        " updated_at = now()",
        (enterprise, period, capacity_kg, who),
    )


@dataclass(frozen=True)
class QuotaRow:
    """A mine's month: the rules' QuotaStatus, or no capacity configured yet."""

    enterprise: str
    period: str
    policy: QuotaPolicy
    capacity_kg: int | None
    status: QuotaStatus

    def to_json(self) -> dict[str, Any]:
        out = self.status.to_json()
        if self.capacity_kg is None:
            out.update(capacity_kg=None, remaining_kg=None, over=False, over_kg=0)
        out["policy"] = self.policy
        return out


def quota_status(
    conn: psycopg.Connection[Any], enterprise: str, period: str, *, now: datetime
) -> QuotaRow:
    cap = conn.execute(
        "SELECT capacity_kg FROM ticket_capacity WHERE enterprise = %s AND period = %s",
        (enterprise, period),
    ).fetchone()
    row = conn.execute(
        "SELECT"
        " (SELECT coalesce(sum(net_kg), 0) FROM ticket_consumption"
        "   WHERE enterprise = %(e)s AND period = %(p)s),"
        " (SELECT count(*) FROM tickets WHERE enterprise = %(e)s AND quota_period = %(p)s),"
        " (SELECT count(*) FROM tickets t WHERE enterprise = %(e)s AND quota_period = %(p)s"
        "   AND EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = t.id)),"
        " (SELECT coalesce(sum(planned_net_kg), 0) FROM tickets t"
        "   WHERE enterprise = %(e)s AND quota_period = %(p)s AND voided_at IS NULL"
        "   AND valid_to > %(now)s"
        "   AND NOT EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = t.id))",
        {"e": enterprise, "p": period, "now": now},
    ).fetchone()
    assert row is not None
    capacity = None if cap is None else int(cap[0])
    status = QuotaStatus(enterprise, period, capacity if capacity is not None else 0,
                         consumed_kg=int(row[0]), reserved_kg=int(row[3]), issued=int(row[1]),
                         used=int(row[2]))
    return QuotaRow(enterprise, period, get_policy(conn, enterprise), capacity, status)


def quota_overview(
    conn: psycopg.Connection[Any], period: str, *, now: datetime, enterprise: str | None = None
) -> list[QuotaRow]:
    """Every mine with a capacity, tickets or weighings in ``period`` (one, for an enterprise)."""
    check_period(period)
    rows = conn.execute(
        "SELECT enterprise FROM ticket_capacity WHERE period = %(p)s"
        " UNION SELECT enterprise FROM tickets WHERE quota_period = %(p)s"
        " UNION SELECT enterprise FROM ticket_consumption WHERE period = %(p)s"
        " ORDER BY 1",
        {"p": period},
    ).fetchall()
    names = [r[0] for r in rows]
    if enterprise is not None:
        names = [enterprise]
    return [quota_status(conn, e, period, now=now) for e in names]


def lock_quota(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], enterprise: str,
               period: str) -> None:
    """Serialise issuance and consumption of one mine's month across processes."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                 (f"ticket_quota/{enterprise}/{period}",))


# -- issuance -----------------------------------------------------------------------------------

def _next_ticket_id(conn: psycopg.Connection[Any], now: datetime) -> str:
    row = conn.execute("SELECT nextval('ticket_serial')").fetchone()
    assert row is not None
    day = (now + CHINA_OFFSET).strftime("%y%m%d")
    return f"T{day}{int(row[0]):04d}"



def check_plate(text: str) -> str:
    """The plate as the gate's reader reports it (``陕k·7x215`` → ``陕K7X215``), or
    TicketInputError. Stored and signed normalised, so every gate and the central's re-check
    compare like with like, and a plate that cannot exist is refused at issue (issue 12: plates
    are normalised or refused on every input path)."""
    plate = normalise_plate(text)
    if plate is None:
        raise TicketInputError(
            f"plate {text[:32]!r} is not a valid Chinese plate: write the province character, "
            f"the office letter and 5 letters or digits (6 on new-energy plates; no I or O), "
            f"e.g. 陕K7X215 or 晋B1234挂 — separators, spaces, lowercase and full-width "
            f"letters are fine")
    return plate


def issue(
    conn: psycopg.Connection[Any],
    req: IssueRequest,
    *,
    who: str,
    now: datetime,
    default_validity: timedelta = timedelta(hours=48),
    max_validity_days: int = 31,
    issuer_keys: IssuerKeyStore | None = None,
) -> TicketRecord:
    """Sign and store one ticket; raise QuotaRefusedError under ``enforce`` past the quota.
    ``issuer_keys``: where the signing keys are ([tickets] issuer_key_dir)."""
    check_enterprise_id(req.enterprise)
    plate = check_plate(req.plate)
    now = now.astimezone(UTC).replace(microsecond=0)
    # req.site is the loading site (the mine) the ticket names; any gate serving it accepts it.
    check_issuing_site(conn, enterprise=req.enterprise, loading_site=req.site)
    valid_from = (req.valid_from or now).astimezone(UTC).replace(microsecond=0)
    valid_to = (req.valid_to or valid_from + default_validity).astimezone(UTC)
    period = req.quota_period or default_quota_period(now)
    check_period(period)
    if valid_to - now > timedelta(days=max_validity_days):
        raise TicketInputError(
            f"valid_to {format_time(valid_to)} is more than {max_validity_days} days after "
            "issue; gates refuse such long-lived tickets (trust list max-validity-days). "
            "Issue a ticket per trip with a shorter validity"
        )
    with conn.transaction():
        lock_quota(conn, req.enterprise, period)
        quota = quota_status(conn, req.enterprise, period, now=now)
        if quota.capacity_kg is None and quota.policy == "enforce":
            raise QuotaRefusedError(
                f"未设置 {period} 核定产能，执行模式下不能开票 / no approved capacity is set for "
                f"{req.enterprise} in {period}, and the quota policy is enforce: ask the energy "
                "bureau to set it (PUT /api/v1/tickets/quota/{enterprise}/{period})",
                quota.to_json(),
            )
        if quota.capacity_kg is not None:
            if req.planned_net_kg <= 0:
                raise TicketInputError("planned_net_kg must be a positive number of kg")
            decision = decide_issuance(quota.policy, quota.status, req.planned_net_kg)
            if not decision.allowed:
                raise QuotaRefusedError(decision.message, quota.to_json())
        signer = active_signer(conn, req.enterprise, now=now, store=issuer_keys)
        ticket_id = _next_ticket_id(conn, now)
        try:
            ticket = Ticket(
                ticket_id=ticket_id, issuer=req.enterprise, site=req.site, plate=plate,
                buyer=req.buyer, destination=req.destination, coal_type=req.coal_type,
                planned_net_kg=req.planned_net_kg, quota_period=period, valid_from=valid_from,
                valid_to=valid_to, issued_at=now,
            )
            text = issue_ticket(ticket, signer)
            if len(text) > _QR_V12_Q_CHARS:
                make_qr(text)  # raises, naming the version needed and what to shorten
        except TicketFormatError as exc:
            raise TicketInputError(str(exc)) from None
        token = secrets.token_urlsafe(18)
        conn.execute(
            f"INSERT INTO tickets ({_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            "  NULL, NULL, NULL)",
            (ticket_id, req.enterprise, req.site, ticket.plate, ticket.buyer,
             ticket.destination, ticket.coal_type, req.buyer_name, req.destination_name,
             ticket.planned_net_kg, period, ticket.valid_from, ticket.valid_to, now,
             signer.key_id.hex(), text, token, who),
        )
        enqueue_loading_site(conn, req.site, {"type": "issued", "ticket": text})
    return get_ticket(conn, ticket_id)


def void(
    conn: psycopg.Connection[Any], ticket_id: str, *, reason: str, who: str, now: datetime
) -> TicketRecord:
    """Void an unused ticket; the revocation reaches its gate over MQTT."""
    reason = reason.strip()
    if not reason:
        raise TicketInputError("a reason is required to void a ticket (e.g. 订单取消)")
    with conn.transaction():
        ticket = get_ticket(conn, ticket_id, for_update=True)
        if ticket.voided_at is not None:
            raise TicketStateError(
                f"ticket {ticket_id} was already voided at {_ts(ticket.voided_at)} by "
                f"{ticket.voided_by}"
            )
        if ticket.uses:
            use = ticket.uses[0]
            raise TicketStateError(
                f"ticket {ticket_id} was already used at site {use.site} (ledger seq {use.seq},"
                f" {_ts(use.ts)}); a used ticket cannot be voided"
            )
        conn.execute(
            "UPDATE tickets SET voided_at = %s, voided_by = %s, void_reason = %s WHERE id = %s",
            (now, who, reason, ticket_id),
        )
        enqueue_loading_site(conn, ticket.site, {"type": "revoked", "ticket_id": ticket_id,
                                                 "at": format_time(now), "reason": reason})
    return get_ticket(conn, ticket_id)


# -- reading ------------------------------------------------------------------------------------

def _uses(conn: psycopg.Connection[Any], ticket_id: str) -> tuple[TicketUseRow, ...]:
    rows = conn.execute(
        "SELECT u.site, u.seq, u.ts, w.txn, w.gross_kg, w.tare_kg, w.net_kg, w.axles, w.plate,"
        " w.decision FROM ticket_uses u LEFT JOIN weighings w ON w.site = u.site AND"
        " w.seq = u.seq WHERE u.ticket_id = %s ORDER BY u.ts, u.site, u.seq",
        (ticket_id,),
    ).fetchall()
    return tuple(TicketUseRow(*r) for r in rows)


def _record(conn: psycopg.Connection[Any], row: dict[str, Any]) -> TicketRecord:
    return TicketRecord(**row, uses=_uses(conn, row["id"]))


def get_ticket(
    conn: psycopg.Connection[Any], ticket_id: str, *, for_update: bool = False
) -> TicketRecord:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM tickets WHERE id = %s"
                    + (" FOR UPDATE" if for_update else ""), (ticket_id,))
        row = cur.fetchone()
    if row is None:
        raise TicketNotFoundError(f"no ticket {ticket_id!r}")
    return _record(conn, row)


def get_by_page_token(conn: psycopg.Connection[Any], token: str) -> TicketRecord:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM tickets WHERE page_token = %s", (token,))
        row = cur.fetchone()
    if row is None:
        raise TicketNotFoundError("no ticket at this address; check the link")
    return _record(conn, row)


_STATE_SQL = {
    "voided": "voided_at IS NOT NULL",
    "used": "voided_at IS NULL"
            " AND EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = tickets.id)",
    "expired": "voided_at IS NULL AND valid_to <= %(now)s"
               " AND NOT EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = tickets.id)",
    "valid": "voided_at IS NULL AND valid_from <= %(now)s AND valid_to > %(now)s"
             " AND NOT EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = tickets.id)",
    "not_yet_valid": "voided_at IS NULL AND valid_from > %(now)s"
                     " AND NOT EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = tickets.id)",
}


def list_tickets(
    conn: psycopg.Connection[Any],
    *,
    now: datetime,
    enterprise: str | None = None,
    site: str | None = None,
    plate: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[TicketRecord]:
    """Newest first."""
    where = ["TRUE"]
    args: dict[str, Any] = {"now": now, "limit": limit}
    if plate is not None:  # stored normalised: '陕K·7X215' finds 陕K7X215's tickets
        plate = normalise_plate(plate) or plate
    for name, value in (("enterprise", enterprise), ("site", site), ("plate", plate)):
        if value is not None:
            where.append(f"{name} = %({name})s")
            args[name] = value
    if state is not None:
        if state not in _STATE_SQL:
            raise TicketInputError(f"state {state!r} must be one of {', '.join(_STATE_SQL)}")
        where.append(_STATE_SQL[state])
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM tickets WHERE {' AND '.join(where)}"
                    " ORDER BY issued_at DESC, id DESC LIMIT %(limit)s", args)
        rows = cur.fetchall()
    return [_record(conn, r) for r in rows]
