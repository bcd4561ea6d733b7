"""Projections of verified entries, run by the ingest inside its database transaction.

``apply(cur, site_id, entries)`` is called once per stored batch, with the newly verified
entries of one site in seq order (the ingest holds the site's row lock, so batches of one site
never interleave). It

- projects every ``weighing`` entry into the searchable ``weighings`` table, and
- runs the pure rules (central.rules) over the entries and stores the alarms they raise,
  keeping the site's rule state in ``site_rule_state``, and
- reconciles loaded weighings against e-tickets and quota (central.tickets.reconcile:
  ticket_reused, over_production, invalid_ticket for voided or foreign tickets).

A weighing's coal type is the one the gate wrote, else that of the e-ticket it names.

Nothing here commits: if the ingest rolls back, the projection and the alarms roll back with
the entries, so an alarm never points at an entry that was not stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from central.alarms import raise_alarms
from central.rules import Lookups, SiteRuleState, evaluate
from central.settings import RuleSettings
from central.tickets.reconcile import apply as reconcile_tickets
from central.tickets.rules import NetTolerance
from ledger.entry import Entry

__all__ = ["apply"]


class _Wraps(Protocol):
    """A verified entry as the ingest holds it (central.ingest.core.VerifiedEntry)."""

    @property
    def entry(self) -> Entry: ...

_WEIGHING_COLUMNS = (
    "txn", "pass", "plate", "plate_conf_pm", "plate_source", "axles", "weight_kg", "gross_kg",
    "tare_kg", "net_kg", "tare_source", "tare_seq", "ticket_id", "coal_type", "limit_kg",
    "decision",
)
_INT_COLUMNS = frozenset(
    {"plate_conf_pm", "axles", "weight_kg", "gross_kg", "tare_kg", "net_kg", "tare_seq",
     "limit_kg"}
)


def _column(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    # A verified entry is still only what the gate wrote: keep odd values out of typed columns.
    if name in _INT_COLUMNS:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62
        return value if ok else None
    return value if isinstance(value, str) else None


def _weighing_row(site: str, e: Entry, coal_types: dict[str, str]) -> tuple[Any, ...]:
    reasons = e.body.get("reasons")
    reasons = [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []
    values = {c: _column(e.body, c) for c in _WEIGHING_COLUMNS}
    if values["coal_type"] is None and values["ticket_id"] is not None:
        values["coal_type"] = coal_types.get(values["ticket_id"])
    return (site, e.seq, e.ts, *values.values(), reasons)


def _ticket_coal_types(cur: psycopg.Cursor[Any], weighings: Sequence[Entry]) -> dict[str, str]:
    ids = {t for e in weighings if e.body.get("coal_type") is None
           and isinstance(t := e.body.get("ticket_id"), str)}
    if not ids:
        return {}
    cur.execute("SELECT id, coal_type FROM tickets WHERE id = ANY(%s)", (sorted(ids),))
    return {row[0]: row[1] for row in cur.fetchall()}


def _txn_plates(cur: psycopg.Cursor[Any], site: str, entries: Sequence[Entry]) -> dict[str, str]:
    """Plates of earlier weighings for the batch's passages (to name an escaping truck)."""
    in_batch = {e.body.get("txn") for e in entries if e.kind == "weighing"}
    txns = {t for e in entries if e.kind == "passage"
            and isinstance(t := e.body.get("txn"), str) and t not in in_batch}
    if not txns:
        return {}
    cur.execute(
        "SELECT DISTINCT ON (txn) txn, plate FROM weighings"
        " WHERE site = %s AND txn = ANY(%s) AND plate IS NOT NULL ORDER BY txn, seq DESC",
        (site, sorted(txns)),
    )
    return {row[0]: row[1] for row in cur.fetchall()}


def _lookups(cur: psycopg.Cursor[Any], site: str, weighings: Sequence[Entry],
             rules: RuleSettings) -> Lookups:
    if not weighings:
        return Lookups()
    first = weighings[0].seq
    tare_seqs = {
        s for e in weighings
        if isinstance(s := e.body.get("tare_seq"), int) and not isinstance(s, bool) and s < first
    }
    plates = {p for e in weighings if e.body.get("pass") == "tare"
              and isinstance(p := e.body.get("plate"), str)}
    tare_plates: dict[int, str] = {}
    if tare_seqs:
        cur.execute(
            "SELECT seq, plate FROM weighings WHERE site = %s AND seq = ANY(%s)"
            " AND plate IS NOT NULL",
            (site, sorted(tare_seqs)),
        )
        tare_plates = {row[0]: row[1] for row in cur.fetchall()}
    history: dict[str, list[int]] = {}
    if plates:
        cur.execute(
            "SELECT plate, weight_kg FROM ("
            " SELECT plate, weight_kg, seq,"
            "  row_number() OVER (PARTITION BY plate ORDER BY seq DESC) AS rn"
            " FROM weighings WHERE site = %s AND pass = 'tare' AND seq < %s"
            "  AND plate = ANY(%s) AND weight_kg IS NOT NULL) t"
            " WHERE rn <= %s ORDER BY plate, seq",
            (site, first, sorted(plates), rules.tare_history_max),
        )
        for plate, kg in cur.fetchall():
            history.setdefault(plate, []).append(kg)
    return Lookups(tare_plates=tare_plates, tare_history=history)


def apply(
    cur: psycopg.Cursor[Any],
    site_id: str,
    items: Sequence[Entry | _Wraps],
    *,
    rules: RuleSettings | None = None,
    received_at: datetime | None = None,
) -> None:
    """Project one site's newly verified entries (seq order) and raise their alarms.

    ``items`` are ``ledger.entry.Entry`` values or wrappers holding one as ``.entry``.
    ``received_at`` is when the batch arrived (default: now),
    for the clock_skew rule; ``rules`` the deployment's rule settings (default: built-in).
    """
    entries = [item if isinstance(item, Entry) else item.entry for item in items]
    if not entries:
        return
    rules = rules or RuleSettings()
    received_at = received_at or datetime.now(UTC)
    weighings = [e for e in entries if e.kind == "weighing"]
    lookups = replace(_lookups(cur, site_id, weighings, rules),
                      txn_plates=_txn_plates(cur, site_id, entries))
    if weighings:
        coal_types = _ticket_coal_types(cur, weighings)
        columns = ", ".join(("site", "seq", "ts", *_WEIGHING_COLUMNS, "reasons"))
        marks = ", ".join(["%s"] * (len(_WEIGHING_COLUMNS) + 4))
        cur.executemany(
            f"INSERT INTO weighings ({columns}) VALUES ({marks})"
            " ON CONFLICT (site, seq) DO NOTHING",
            [_weighing_row(site_id, e, coal_types) for e in weighings],
        )
    cur.execute("SELECT state FROM site_rule_state WHERE site = %s FOR UPDATE", (site_id,))
    row = cur.fetchone()
    state = SiteRuleState.from_json(row[0] if row else None)
    outcome = evaluate(entries, state, lookups, rules, received_at)
    cur.execute(
        "INSERT INTO site_rule_state (site, state) VALUES (%s, %s)"
        " ON CONFLICT (site) DO UPDATE SET state = EXCLUDED.state",
        (site_id, Jsonb(outcome.state.to_json())),
    )
    raise_alarms(cur, outcome.alarms)
    reconcile_tickets(cur, site_id, entries,
                      ticket_required_default=rules.ticket_required_default,
                      tolerance=NetTolerance(rules.net_tolerance_pct, rules.net_tolerance_kg))
