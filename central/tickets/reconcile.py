"""Reconciliation of ingested weighings against e-tickets and quota.

``apply(cur, site_id, entries)`` runs inside the ingest transaction (called from the
projections hook) with one site's newly verified entries in seq order.

Only a **released** loaded weighing counts: released by the gate's decision, or held and then
released by hand (an ``override`` ``manual_barrier_up`` naming its transaction). A held
weighing never consumes a ticket or quota, and a void takes a counted weighing back out, so a
truck held, voided and weighed again uses its ticket once, by the released net. For every
loaded weighing that names a ticket the central re-checks the ticket against its own table
(``ticket_mismatch``: exists, validity window, plate, planned net within tolerance, issuing
mine), whatever the gate said; a voided ticket or one of another loading site is
``invalid_ticket``; a loaded weighing without a ticket at a site that requires one (its latest
``config`` entry, else ``ticket_required_default``) is ``no_ticket``, with the dedup key
central.rules uses for the same fact, so the two land on one alarm. Every ``override`` entry
raises its override-class alarm (central.rules.overrides). For every counted weighing it

- consumes the mine's approved capacity by the **actual** net weighed (the ticket's quota
  period, else the weighing's month in China time) and raises ``over_production`` (超产) on the
  weighing that takes the month past capacity — under both quota policies;
- records the ticket's use; a second use anywhere (two gates, or twice at one) raises
  ``ticket_reused``; the use is queued for the ticket's other gates as a ``used`` delta.

Everything is idempotent on (site, seq): a resent batch changes nothing. Nothing commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

from central.alarms import raise_alarms
from central.rules.model import AlarmDraft
from central.rules.overrides import WeighingView, judge_override
from central.tickets.distribution import enqueue_loading_site
from central.tickets.rules import (
    IssuedTicket,
    NetTolerance,
    QuotaStatus,
    RuleAlarm,
    TicketUse,
    WeighingFacts,
    apply_weighing,
    check_reuse,
    check_ticket_required,
    period_for,
    recheck_ticket,
)
from edge_agent.plates.grammar import normalise_plate
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
    tolerance: NetTolerance | None = None,
) -> int:
    """Reconcile one site's new entries; returns how many new alarms were stored."""
    entries = [item if isinstance(item, Entry) else item.entry for item in items]
    if not entries:
        return 0
    row = cur.execute("SELECT enterprise, loading_site FROM sites WHERE id = %s",
                      (site_id,)).fetchone()
    gate = _Gate(site_id, row[1] if row else site_id, row[0] if row else None,
                 tolerance or NetTolerance())
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
        if e.kind == "override":
            drafts.extend(_override(cur, gate, e))
            continue
        if e.kind != "weighing" or body.get("pass") not in _LOADED:
            continue
        drafts.extend(_weighing(cur, gate, e, required))
    if policy_seen is not None:
        cur.execute(
            "INSERT INTO ticket_site_policy (site, ticket_required) VALUES (%s, %s)"
            " ON CONFLICT (site) DO UPDATE SET ticket_required = EXCLUDED.ticket_required",
            (site_id, required),
        )
    return raise_alarms(cur, drafts) if drafts else 0


@dataclass(frozen=True)
class _Gate:
    site: str
    loading_site: str
    enterprise: str | None
    tolerance: NetTolerance


def _ticket(cur: psycopg.Cursor[Any], ticket_id: str) -> tuple[IssuedTicket, str] | None:
    """The central's record of a ticket, and its quota period."""
    row = cur.execute(
        "SELECT enterprise, site, plate, planned_net_kg, valid_from, valid_to, voided_at,"
        " quota_period FROM tickets WHERE id = %s",
        (ticket_id,),
    ).fetchone()
    if row is None:
        return None
    return IssuedTicket(ticket_id, row[0], row[1], row[2], row[3], row[4], row[5],
                        row[6]), row[7]


def _key(txn: str | None, seq: int, code: str) -> str:
    # Same key as central.rules for the same fact: one alarm, whoever derives it first.
    return f"txn:{txn}:{code}" if txn else f"seq:{seq}:{code}"


def _weighing(
    cur: psycopg.Cursor[Any], gate: _Gate, e: Entry, required: bool
) -> list[AlarmDraft]:
    body = e.body
    site = gate.site
    ts = parse_ts(e.ts)
    txn = _str(body, "txn")
    ticket_id = _str(body, "ticket_id")
    plate = _str(body, "plate")
    net = _int(body, "net_kg")
    released = body.get("decision") == "release"
    out: list[AlarmDraft] = []

    if ticket_id is None:
        no_ticket = check_ticket_required(
            WeighingFacts(site, e.seq, txn or "", body["pass"], None, plate or ""),
            ticket_required=required,
        )
        if no_ticket is not None:
            out.append(AlarmDraft(
                site=site, code="no_ticket", severity="critical" if released else "warning",
                dedup_key=_key(txn, e.seq, "no_ticket"), seq=e.seq, txn=txn,
                detail={"source": "central", "plate": plate, "released": released},
            ))
    else:
        found = _ticket(cur, ticket_id)
        ticket = found[0] if found else None
        failed = recheck_ticket(ticket, at=ts, plate=plate, net_kg=net,
                                enterprise=gate.enterprise, tolerance=gate.tolerance,
                                normalise=normalise_plate)
        if failed:
            # The gate's own check is not trusted: a gate that says "ok" for a wrong plate (or
            # a ticket the central never issued) is caught here.
            out.append(AlarmDraft(
                site=site, code="ticket_mismatch",
                severity="critical" if released else "warning",
                dedup_key=_key(txn, e.seq, "ticket_mismatch"), seq=e.seq, txn=txn,
                detail={"source": "central", "ticket_id": ticket_id, "plate": plate,
                        "failed": sorted(failed), "checks": failed, "released": released,
                        "gate_reasons": body.get("reasons")},
            ))
        if ticket is not None:
            if ticket.voided_at is not None and ticket.voided_at <= ts:
                out.append(AlarmDraft(
                    site=site, code="invalid_ticket", severity="critical",
                    dedup_key=_key(txn, e.seq, "invalid_ticket"), seq=e.seq, txn=txn,
                    detail={"source": "central", "result": "revoked", "ticket_id": ticket_id,
                            "voided_at": format_time(ticket.voided_at), "plate": plate},
                ))
            if ticket.site != gate.loading_site:
                out.append(AlarmDraft(
                    site=site, code="invalid_ticket", severity="critical",
                    dedup_key=f"seq:{e.seq}:ticket_wrong_site", seq=e.seq, txn=txn,
                    detail={"source": "central", "result": "wrong_site", "ticket_id": ticket_id,
                            "ticket_site": ticket.site, "gate_loading_site": gate.loading_site,
                            "plate": plate},
                ))
    if released and not _voided(cur, site, e.seq):
        out.extend(_count(cur, gate, e.seq, ts, txn, net, ticket_id, alarm_seq=e.seq))
    return out


def _voided(cur: psycopg.Cursor[Any], site: str, seq: int) -> bool:
    """Voided already (a batch reconciled again after its void): it never counts again."""
    row = cur.execute("SELECT voided_seq FROM weighings WHERE site = %s AND seq = %s",
                      (site, seq)).fetchone()
    return row is not None and row[0] is not None


def _count(
    cur: psycopg.Cursor[Any], gate: _Gate, seq: int, ts: datetime, txn: str | None,
    net: int | None, ticket_id: str | None, *, alarm_seq: int,
) -> list[AlarmDraft]:
    """A released loaded weighing (``seq``, weighed at ``ts``): consume quota by its net and
    record the ticket's use. ``alarm_seq`` is the entry that released it (the weighing, or the
    operator's override for a hand release)."""
    site = gate.site
    out: list[AlarmDraft] = []
    found = _ticket(cur, ticket_id) if ticket_id is not None else None
    ticket = found[0] if found else None
    # Capacity: the mine's month is consumed by the actual net weighed, ticket or not.
    if gate.enterprise is not None and net is not None and net >= 0:
        own = found is not None and found[0].enterprise == gate.enterprise
        period = period_for(ts, found[1] if own and found is not None else None)
        out.extend(_consume(cur, site, gate.enterprise, period, seq, txn, net, ticket_id,
                            alarm_seq=alarm_seq))
    if ticket_id is None:
        return out
    inserted = cur.execute(
        "INSERT INTO ticket_uses (site, seq, ticket_id, ts) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (site, seq) DO NOTHING RETURNING 1",
        (site, seq, ticket_id, ts),
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
            (ticket_id, site, seq),
        ).fetchall()
    ]
    reuse = check_reuse(TicketUse(ticket_id, site, seq, ts), previous)
    if reuse is not None:
        out.append(_draft(reuse, seq=alarm_seq, txn=txn, site=site))
    if ticket is not None:
        # The other gates of the ticket's loading site must refuse it from now on, even
        # offline (this gate knows: it recorded the use itself).
        enqueue_loading_site(cur, ticket.site, {"type": "used", "ticket_id": ticket_id,
                                                "site": site, "seq": seq,
                                                "at": format_time(ts)}, exclude=site)
    return out


def _override(cur: psycopg.Cursor[Any], gate: _Gate, e: Entry) -> list[AlarmDraft]:
    """An operator override: its alarm, and a hand release or a void of the weighing it names."""
    txn = _str(e.body, "txn")
    view: WeighingView | None = None
    ts: datetime | None = None
    if txn is not None:
        row = cur.execute(
            "SELECT seq, pass, decision, reasons, net_kg, plate, ticket_id, voided_seq,"
            " hand_released_seq, ts FROM weighings WHERE site = %s AND txn = %s AND seq < %s"
            " ORDER BY seq DESC LIMIT 1",
            (gate.site, txn, e.seq),
        ).fetchone()
        if row is not None:
            view = WeighingView(seq=row[0], pass_=row[1], decision=row[2],
                                reasons=tuple(row[3] or ()), net_kg=row[4], plate=row[5],
                                ticket_id=row[6], voided=row[7] is not None,
                                hand_released=row[8] is not None)
            ts = row[9]
    outcome = judge_override(gate.site, e.seq, e.body, view)
    if outcome is None:
        return []
    out = [outcome.alarm]
    if outcome.releases is not None and ts is not None:
        w = outcome.releases
        cur.execute("UPDATE weighings SET hand_released_seq = %s WHERE site = %s AND seq = %s",
                    (e.seq, gate.site, w.seq))
        if w.pass_ in _LOADED:
            out.extend(_count(cur, gate, w.seq, ts, txn, w.net_kg, w.ticket_id,
                              alarm_seq=e.seq))
    if outcome.voids is not None:
        w = outcome.voids
        cur.execute("UPDATE weighings SET voided_seq = %s WHERE site = %s AND seq = %s",
                    (e.seq, gate.site, w.seq))
        # A void takes the weighing out of quota and ticket uses (held ones were never in).
        cur.execute("DELETE FROM ticket_consumption WHERE site = %s AND seq = %s",
                    (gate.site, w.seq))
        cur.execute("DELETE FROM ticket_uses WHERE site = %s AND seq = %s",
                    (gate.site, w.seq))
    return out


def _consume(
    cur: psycopg.Cursor[Any], site: str, enterprise: str, period: str, seq: int,
    txn: str | None, net: int, ticket_id: str | None, *, alarm_seq: int,
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
    return [_draft(a, seq=alarm_seq, txn=txn, site=site) for a in alarms]

