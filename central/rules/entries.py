"""Alarm rules over a site's verified entries, applied in seq order (docs/entry-kinds.md).

The central re-derives alarms from facts, so a cheat is caught even if the gate's own alarm
entry never arrived (or the gate software was altered not to write it): escape, overload,
no_ticket / invalid_ticket, plate_mismatch, tare_out_of_band, barrier_forced and clock_skew.
The gate's `alarm` entries are mirrored too; where the gate reports a fact the central already
derived, both land on one alarm (same dedup key).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from central.rules.model import (
    AlarmDraft,
    EntryFacts,
    Lookups,
    PendingAlarm,
    Severity,
    SiteRuleState,
)
from central.settings import RuleSettings
from ledger.entry import parse_ts
from ledger.errors import EntryError

__all__ = ["RuleOutcome", "evaluate"]

# How many seqs apart a null-txn gate alarm and the central's own derivation of the same fact
# may be and still be taken for one event (the gate writes passage and alarm back to back).
_PAIR_WINDOW = 16
_GROSS_PASSES = ("gross", "one_pass")
_SEVERITIES = ("critical", "warning", "info")
# Ticket check results that point to fraud rather than a mistake at the gate.
_FRAUD_RESULTS = ("bad_signature", "unknown_issuer", "revoked", "used")


Source = Literal["central", "gate"]


@dataclass(frozen=True)
class RuleOutcome:
    state: SiteRuleState
    alarms: list[AlarmDraft]


def _int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    # bool is an int subclass; a `true` weight is malformed, not 1 kg.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


class _Run:
    """One evaluation: the state as it evolves through the batch, and the drafts so far."""

    def __init__(self, state: SiteRuleState, lookups: Lookups, rules: RuleSettings) -> None:
        self.state = state
        self.rules = rules
        self.tare_plates = dict(lookups.tare_plates)
        self.tare_history = {plate: list(v) for plate, v in lookups.tare_history.items()}
        self.txn_plates = dict(lookups.txn_plates)
        self.alarms: list[AlarmDraft] = []

    def raise_(
        self,
        entry: EntryFacts,
        code: str,
        severity: Severity,
        detail: Mapping[str, Any],
        *,
        source: Source = "central",
    ) -> None:
        txn = _str(entry.body, "txn")
        if txn is not None:
            key = f"txn:{txn}:{code}"
        else:
            key = self._pair_null_txn(code, entry.seq, source)
        self.alarms.append(
            AlarmDraft(
                site=entry.site,
                code=code,
                severity=severity,
                dedup_key=key,
                seq=entry.seq,
                txn=txn,
                detail={**detail, "source": source},
            )
        )

    def _pair_null_txn(self, code: str, seq: int, source: Source) -> str:
        pending = [p for p in self.state.pending if seq - p.seq <= _PAIR_WINDOW]
        for p in pending:
            if p.code == code and p.source != source:
                pending.remove(p)
                self.state = replace(self.state, pending=tuple(pending))
                return p.dedup_key
        key = f"seq:{seq}:{code}"
        mine = PendingAlarm(code=code, seq=seq, source=source, dedup_key=key)
        self.state = replace(self.state, pending=(*pending, mine))
        return key


def _weighing(run: _Run, entry: EntryFacts) -> None:
    body = entry.body
    pass_ = _str(body, "pass")
    plate = _str(body, "plate")
    released = body.get("decision") == "release"
    txn = _str(body, "txn")
    if txn is not None and plate is not None:
        run.txn_plates[txn] = plate
    if pass_ in _GROSS_PASSES:
        gross, limit = _int(body, "gross_kg"), _int(body, "limit_kg")
        if gross is not None and limit is not None and gross > limit:
            run.raise_(
                entry,
                "overload",
                "critical" if released else "warning",
                {"plate": plate, "gross_kg": gross, "limit_kg": limit,
                 "excess_kg": gross - limit, "axles": body.get("axles"), "released": released},
            )
        required = run.state.ticket_required
        if required is None:
            required = run.rules.ticket_required_default
        if required and body.get("ticket_id") is None:
            run.raise_(entry, "no_ticket", "critical" if released else "warning",
                       {"plate": plate, "released": released})
    if pass_ == "gross":
        tare_seq = _int(body, "tare_seq")
        tare_plate = run.tare_plates.get(tare_seq) if tare_seq is not None else None
        if plate is not None and tare_plate is not None and tare_plate != plate:
            run.raise_(entry, "plate_mismatch", "critical",
                       {"plate": plate, "tare_plate": tare_plate, "tare_seq": tare_seq})
    if pass_ == "tare" and plate is not None:
        run.tare_plates[entry.seq] = plate
        tare = _int(body, "weight_kg")
        if tare is None:
            tare = _int(body, "tare_kg")
        if tare is None:
            return
        history = run.tare_history.setdefault(plate, [])
        if len(history) >= run.rules.tare_history_min:
            median = statistics.median(history)
            if abs(tare - median) * 1000 > run.rules.tare_band_pm * median:
                run.raise_(entry, "tare_out_of_band", "warning",
                           {"plate": plate, "tare_kg": tare, "median_kg": int(median),
                            "band_pm": run.rules.tare_band_pm, "samples": len(history)})
        history.append(tare)
        del history[: -run.rules.tare_history_max]


def _ticket_check(run: _Run, entry: EntryFacts) -> None:
    result = _str(entry.body, "result")
    if result is None or result == "ok":
        return
    detail = {"result": result, "ticket_id": entry.body.get("ticket_id"),
              "plate": entry.body.get("plate")}
    if result == "wrong_plate":
        run.raise_(entry, "plate_mismatch", "critical", detail)
    else:
        run.raise_(entry, "invalid_ticket",
                   "critical" if result in _FRAUD_RESULTS else "warning", detail)


def _passage(run: _Run, entry: EntryFacts) -> None:
    body = entry.body
    if body.get("direction") != "exit" or body.get("released") is not False:
        return
    txn = _str(body, "txn")
    detail = {"plate": run.txn_plates.get(txn) if txn else None}
    run.raise_(entry, "escape", "critical", {**detail, "barrier": run.state.barrier})
    if run.state.barrier == "down":
        run.raise_(entry, "barrier_forced", "critical", detail)


def _barrier(run: _Run, entry: EntryFacts) -> None:
    action = _str(entry.body, "action")
    if action in ("up", "down"):
        run.state = replace(run.state, barrier=action)


def _gate_alarm(run: _Run, entry: EntryFacts) -> None:
    code = _str(entry.body, "code")
    if code is None:
        return
    severity = entry.body.get("severity")
    detail = entry.body.get("detail")
    run.raise_(
        entry,
        code,
        severity if severity in _SEVERITIES else "warning",
        detail if isinstance(detail, Mapping) else {},
        source="gate",
    )


def _config(run: _Run, entry: EntryFacts) -> None:
    policy = entry.body.get("policy")
    if isinstance(policy, Mapping) and isinstance(policy.get("ticket_required"), bool):
        run.state = replace(run.state, ticket_required=policy["ticket_required"])


_BY_KIND = {
    "weighing": _weighing,
    "ticket_check": _ticket_check,
    "passage": _passage,
    "barrier": _barrier,
    "alarm": _gate_alarm,
    "config": _config,
}


def _clock(run: _Run, entry: EntryFacts, received_at: datetime) -> None:
    """clock_skew: an entry stamped ahead of its arrival, or behind the previous entry.

    An entry stamped well *before* its arrival is not skew: that is a backlog after the site was
    offline, which is normal. Raised once per episode, until an entry is on time again.
    """
    try:
        ts = parse_ts(entry.ts)
    except EntryError:  # verified entries have valid times; never let one stop the projection
        return
    bound = timedelta(seconds=run.rules.clock_skew_s)
    detail: dict[str, Any] = {}
    if ts - received_at > bound:
        detail = {"entry_ts": entry.ts, "received_at": received_at.isoformat(),
                  "ahead_s": int((ts - received_at).total_seconds())}
    elif run.state.last_ts is not None and not run.state.skewed:
        # While the clock is known to be ahead, stepping back is its correction, not a new skew.
        prev = parse_ts(run.state.last_ts)
        if prev - ts > bound:
            detail = {"entry_ts": entry.ts, "previous_ts": run.state.last_ts,
                      "behind_s": int((prev - ts).total_seconds())}
    if detail and not run.state.skewed:
        run.alarms.append(AlarmDraft(site=entry.site, code="clock_skew", severity="warning",
                                     dedup_key=f"seq:{entry.seq}:clock_skew", seq=entry.seq,
                                     detail={"source": "central", **detail}))
    run.state = replace(run.state, skewed=bool(detail), last_ts=entry.ts)


def evaluate(
    entries: Iterable[EntryFacts],
    state: SiteRuleState,
    lookups: Lookups,
    rules: RuleSettings,
    received_at: datetime,
) -> RuleOutcome:
    """Run every rule over ``entries`` (one site's, in seq order) received at ``received_at``.

    Returns the site's new rule state and the alarms to raise. Pure: no I/O, no clock reads.
    """
    run = _Run(state, lookups, rules)
    for entry in entries:
        _clock(run, entry, received_at)
        handler = _BY_KIND.get(entry.kind)
        if handler is not None:
            handler(run, entry)
    return RuleOutcome(state=run.state, alarms=run.alarms)
