"""Reconciliation of ingested weighings against e-tickets and quota.

``apply(cur, site_id, entries)`` runs inside the ingest transaction (called from the
projections hook) with one site's newly verified entries in seq order. For every loaded
weighing (pass ``gross`` or ``one_pass``) it

- consumes the mine's approved capacity by the **actual** net weighed (the ticket's quota
  period, else the weighing's month in China time) and raises ``over_production`` (超产) on the
  weighing that takes the month past capacity — under both quota policies;
- records the ticket's use; a second use anywhere (two gates, or twice at one) raises
  ``ticket_reused``; a use of a ticket voided before the weighing, or at another site than the
  ticket's, raises ``invalid_ticket``; the use is queued for the ticket's gate as a ``used``
  delta when it happened elsewhere;
- raises ``no_ticket`` when the site requires a ticket (its latest ``config`` entry, else
  ``ticket_required_default``) and the weighing has none. The dedup key is the one
  central.rules uses for the same fact, so the two land on one alarm.

Everything is idempotent on (site, seq): a resent batch changes nothing. Nothing commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

from central.alarms import raise_alarms
from central.rules.model import AlarmDraft
from central.tickets.distribution import enqueue_loading_site
from central.tickets.rules import (
    QuotaStatus,
    RuleAlarm,
    TicketUse,
    WeighingFacts,
    apply_weighing,
    check_reuse,
    check_ticket_required,
    period_for,
)
from ledger.entry import Entry, parse_ts
from ledger.trust import format_time

__all__ = ["apply"]

_LOADED = ("gross", "one_pass")


class _Wraps(Protocol):
    @property
    def entry(self) -> Entry: ...


def _int(body: dict[str, Any], key: str) -> int | None:
    v = body.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(body: dict[str, Any], key: str) -> str | None:
    v = body.get(key)
    return v if isinstance(v, str) and v else None


def _draft(alarm: RuleAlarm, *, seq: int, txn: str | None, site: str) -> AlarmDraft:
    return AlarmDraft(site=alarm.site or site, code=alarm.code, severity=alarm.severity,
                      dedup_key=alarm.key, seq=seq, txn=txn,
                      detail={"source": "central", **alarm.detail})


def apply(
    cur: psycopg.Cursor[Any],
    site_id: str,
    items: Sequence[Entry | _Wraps],
    *,
    ticket_required_default: bool = True,
) -> int:
    """Reconcile one site's new entries; returns how many new alarms were stored."""
    entries = [item if isinstance(item, Entry) else item.entry for item in items]
    if not entries:
        return 0
    row = cur.execute("SELECT enterprise, loading_site FROM sites WHERE id = %s",
                      (site_id,)).fetchone()
    enterprise = row[0] if row else None
    loading_site = row[1] if row else site_id
    row = cur.execute("SELECT ticket_required FROM ticket_site_policy WHERE site = %s",
                      (site_id,)).fetchone()
    required = bool(row[0]) if row else ticket_required_default
    policy_seen: bool | None = None
    drafts: list[AlarmDraft] = []
    for e in entries:
        body = e.body
        if e.kind == "config":
            policy = body.get("policy")
            if isinstance(policy, dict) and isinstance(policy.get("ticket_required"), bool):
                required = policy_seen = policy["ticket_required"]
            continue
        if e.kind != "weighing" or body.get("pass") not in _LOADED:
            continue
        drafts.extend(_weighing(cur, site_id, loading_site, enterprise, e, required))
    if policy_seen is not None:
        cur.execute(
            "INSERT INTO ticket_site_policy (site, ticket_required) VALUES (%s, %s)"
            " ON CONFLICT (site) DO UPDATE SET ticket_required = EXCLUDED.ticket_required",
            (site_id, required),
        )
    return raise_alarms(cur, drafts) if drafts else 0


def _weighing(
    cur: psycopg.Cursor[Any], site: str, loading_site: str, enterprise: str | None, e: Entry,
    required: bool,
) -> list[AlarmDraft]:
    body = e.body
    ts = parse_ts(e.ts)
    txn = _str(body, "txn")
    ticket_id = _str(body, "ticket_id")
    net = _int(body, "net_kg")
    out: list[AlarmDraft] = []
    ticket = None
    if ticket_id is not None:
        ticket = cur.execute(
            "SELECT enterprise, site, quota_period, voided_at FROM tickets WHERE id = %s",
            (ticket_id,),
        ).fetchone()

    # Capacity: the mine's month is consumed by the actual net weighed, ticket or not.
    if enterprise is not None and net is not None and net >= 0:
        own_ticket = ticket is not None and ticket[0] == enterprise
        period = period_for(ts, ticket[2] if own_ticket and ticket is not None else None)
        out.extend(_consume(cur, site, enterprise, period, e.seq, txn, net, ticket_id))

    if ticket_id is None:
        no_ticket = check_ticket_required(
            WeighingFacts(site, e.seq, txn or "", body["pass"], None, _str(body, "plate") or ""),
            ticket_required=required,
        )
        if no_ticket is not None:
            # Same key as central.rules for this fact: one alarm, whoever derives it first.
            key = f"txn:{txn}:no_ticket" if txn else f"seq:{e.seq}:no_ticket"
            released = body.get("decision") == "release"
            out.append(AlarmDraft(
                site=site, code="no_ticket", severity="critical" if released else "warning",
                dedup_key=key, seq=e.seq, txn=txn,
                detail={"source": "central", "plate": _str(body, "plate"),
                        "released": released},
            ))
        return out

    inserted = cur.execute(
        "INSERT INTO ticket_uses (site, seq, ticket_id, ts) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (site, seq) DO NOTHING RETURNING 1",
        (site, e.seq, ticket_id, ts),
    ).fetchone()
    if inserted is None:
        return out  # a resend of a weighing already reconciled
    # Serialise uses of one ticket across sites (their batches run concurrently).
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ticket_use/{ticket_id}",))
    previous = [
        TicketUse(r[0], r[1], r[2], r[3])
        for r in cur.execute(
            "SELECT ticket_id, site, seq, ts FROM ticket_uses WHERE ticket_id = %s"
            " AND NOT (site = %s AND seq = %s)",
            (ticket_id, site, e.seq),
        ).fetchall()
    ]
    reuse = check_reuse(TicketUse(ticket_id, site, e.seq, ts), previous)
    if reuse is not None:
        out.append(_draft(reuse, seq=e.seq, txn=txn, site=site))
    if ticket is not None:
        ticket_site, voided_at = ticket[1], ticket[3]
        if voided_at is not None and voided_at <= ts:
            out.append(AlarmDraft(
                site=site, code="invalid_ticket", severity="critical",
                dedup_key=f"txn:{txn}:invalid_ticket" if txn else f"seq:{e.seq}:invalid_ticket",
                seq=e.seq, txn=txn,
                detail={"source": "central", "result": "revoked", "ticket_id": ticket_id,
                        "voided_at": format_time(voided_at),
                        "plate": _str(body, "plate")},
            ))
        if ticket_site != loading_site:
            out.append(AlarmDraft(
                site=site, code="invalid_ticket", severity="critical",
                dedup_key=f"seq:{e.seq}:ticket_wrong_site", seq=e.seq, txn=txn,
                detail={"source": "central", "result": "wrong_site", "ticket_id": ticket_id,
                        "ticket_site": ticket_site, "gate_loading_site": loading_site,
                        "plate": _str(body, "plate")},
            ))
        # The other gates of the ticket's loading site must refuse it from now on, even
        # offline (this gate knows: it recorded the use itself).
        enqueue_loading_site(cur, ticket_site, {"type": "used", "ticket_id": ticket_id,
                                                "site": site, "seq": e.seq,
                                                "at": format_time(ts)}, exclude=site)
    return out


def _consume(
    cur: psycopg.Cursor[Any], site: str, enterprise: str, period: str, seq: int,
    txn: str | None, net: int, ticket_id: str | None,
) -> list[AlarmDraft]:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"ticket_quota/{enterprise}/{period}",))
    inserted = cur.execute(
        "INSERT INTO ticket_consumption (site, seq, enterprise, period, net_kg, ticket_id)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site, seq) DO NOTHING RETURNING 1",
        (site, seq, enterprise, period, net, ticket_id),
    ).fetchone()
    if inserted is None:
        return []
    cap = cur.execute(
        "SELECT capacity_kg FROM ticket_capacity WHERE enterprise = %s AND period = %s",
        (enterprise, period),
    ).fetchone()
    if cap is None:
        return []  # no approved capacity set: consumption is recorded, nothing to pass
    row = cur.execute(
        "SELECT coalesce(sum(net_kg), 0) FROM ticket_consumption WHERE enterprise = %s"
        " AND period = %s AND NOT (site = %s AND seq = %s)",
        (enterprise, period, site, seq),
    ).fetchone()
    before = QuotaStatus(enterprise, period, int(cap[0]), consumed_kg=int(row[0]) if row else 0)
    _, alarms = apply_weighing(before, net, site=site)
    return [_draft(a, seq=seq, txn=txn, site=site) for a in alarms]

