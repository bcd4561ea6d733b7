"""Central-side e-ticket rules: quota policy, capacity consumption, reconciliation alarms.

Pure: data and times in, decisions and alarms out. The central's database and API layers load
the facts, call these, and store or publish what comes back.

Quota is policy (DESIGN.md §1). Approved capacity (核定产能) is set per mine per month and is
consumed by the *actual* net weight weighed at the gate, never by a ticket's planned weight.
- ``monitor`` (default): issuance is always allowed; when consumed net passes capacity an
  ``over_production`` (超产) alarm is raised, once per mine and month.
- ``enforce``: a ticket is refused when consumed net, plus the planned net of tickets issued
  and still open (not used, voided or expired), plus the new ticket's planned net, would pass
  capacity. Open tickets reserve quota so a mine cannot issue far beyond what is left; a used
  ticket releases its reservation and its actual net is consumed instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

__all__ = [
    "QuotaPolicy",
    "RuleAlarm",
    "QuotaStatus",
    "IssuanceDecision",
    "TicketUse",
    "WeighingFacts",
    "decide_issuance",
    "apply_weighing",
    "period_for",
    "check_reuse",
    "find_reuses",
    "check_ticket_required",
    "IssuedTicket",
    "NetTolerance",
    "TicketCheck",
    "recheck_ticket",
]

QuotaPolicy = Literal["monitor", "enforce"]
_CHINA = timedelta(hours=8)  # China Standard Time, no daylight saving: quota months are local


@dataclass(frozen=True)
class RuleAlarm:
    """An alarm raised by these rules; ``key`` lets the caller store it idempotently."""

    code: str  # docs/entry-kinds.md alarm codes: over_production, ticket_reused, no_ticket
    severity: Literal["critical", "warning"]
    key: str
    site: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def _tonnes(kg: int) -> str:
    return f"{kg / 1000:,.1f} t"


def period_for(when: datetime, ticket_period: str | None = None) -> str:
    """The capacity month a weighing counts against: the ticket's quota period when it has
    one, else the month of the weighing in China Standard Time."""
    if ticket_period is not None:
        return ticket_period
    return (when.astimezone(UTC) + _CHINA).strftime("%Y-%m")


@dataclass(frozen=True)
class QuotaStatus:
    """One mine's capacity month. All weights integer kilograms."""

    enterprise: str
    period: str  # YYYY-MM
    capacity_kg: int
    consumed_kg: int = 0  # actual net weighed at the gates
    reserved_kg: int = 0  # planned net of open (issued, unused, live) tickets
    issued: int = 0  # tickets issued for the period
    used: int = 0  # tickets used at a gate

    @property
    def remaining_kg(self) -> int:
        """Capacity minus actual consumption (negative when over-produced)."""
        return self.capacity_kg - self.consumed_kg

    @property
    def over(self) -> bool:
        return self.consumed_kg > self.capacity_kg

    def to_json(self) -> dict[str, Any]:
        """The bureau dashboard row: issued, used, remaining; ``over`` highlights 超产."""
        return {
            "enterprise": self.enterprise,
            "period": self.period,
            "capacity_kg": self.capacity_kg,
            "consumed_kg": self.consumed_kg,
            "reserved_kg": self.reserved_kg,
            "remaining_kg": self.remaining_kg,
            "issued": self.issued,
            "used": self.used,
            "over": self.over,
            "over_kg": max(0, -self.remaining_kg),
        }


@dataclass(frozen=True)
class IssuanceDecision:
    allowed: bool
    message: str  # Chinese, then English; shown to the sales office as is
    status: QuotaStatus  # with the new ticket reserved when allowed


def decide_issuance(
    policy: QuotaPolicy, status: QuotaStatus, planned_net_kg: int
) -> IssuanceDecision:
    """May this mine issue one more ticket of ``planned_net_kg`` in ``status.period``?"""
    if planned_net_kg <= 0:
        raise ValueError(f"planned net must be positive, got {planned_net_kg} kg")
    after = replace(
        status, reserved_kg=status.reserved_kg + planned_net_kg, issued=status.issued + 1
    )
    committed = status.consumed_kg + status.reserved_kg
    left = status.capacity_kg - committed
    if policy == "enforce" and planned_net_kg > left:
        return IssuanceDecision(
            False,
            f"超出核定产能，不能开票：{status.period} 核定 {_tonnes(status.capacity_kg)}，"
            f"已过磅 {_tonnes(status.consumed_kg)}，已开未用 {_tonnes(status.reserved_kg)}，"
            f"剩余 {_tonnes(max(0, left))}，本票计划 {_tonnes(planned_net_kg)}。"
            f" / Refused: quota for {status.period} is {_tonnes(status.capacity_kg)}; "
            f"{_tonnes(status.consumed_kg)} weighed and {_tonnes(status.reserved_kg)} on open "
            f"tickets leave {_tonnes(max(0, left))}, less than the planned "
            f"{_tonnes(planned_net_kg)}. Lower the planned weight, void unused tickets, or "
            "ask the energy bureau to review the approved capacity.",
            status,
        )
    if status.over:
        message = (
            f"已超产 {_tonnes(-status.remaining_kg)}（监测模式，仍可开票）"
            f" / over capacity by {_tonnes(-status.remaining_kg)} (monitor policy: issued)"
        )
    else:
        message = f"已开票 / issued; {_tonnes(max(0, left - planned_net_kg))} unreserved"
    return IssuanceDecision(True, message, after)


def apply_weighing(
    status: QuotaStatus,
    net_kg: int,
    *,
    site: str,
    released_planned_kg: int = 0,
) -> tuple[QuotaStatus, list[RuleAlarm]]:
    """Consume ``net_kg`` actually weighed; release the used ticket's reservation.

    Raises ``over_production`` exactly once: on the weighing that takes consumption past
    capacity. Over-production is monitored under both policies — actual loads can exceed
    what the tickets planned.
    """
    if net_kg < 0:
        raise ValueError(f"net weight must not be negative, got {net_kg} kg")
    after = replace(
        status,
        consumed_kg=status.consumed_kg + net_kg,
        reserved_kg=max(0, status.reserved_kg - released_planned_kg),
        used=status.used + (1 if released_planned_kg else 0),
    )
    alarms: list[RuleAlarm] = []
    if not status.over and after.over:
        alarms.append(
            RuleAlarm(
                "over_production",
                "warning",
                f"over_production/{status.enterprise}/{status.period}",
                site,
                {
                    "enterprise": status.enterprise,
                    "period": status.period,
                    "capacity_kg": status.capacity_kg,
                    "consumed_kg": after.consumed_kg,
                    "over_kg": after.consumed_kg - status.capacity_kg,
                },
            )
        )
    return after, alarms


@dataclass(frozen=True)
class TicketUse:
    """A ticket released a truck: from a ``weighing`` entry with a ``ticket_id``."""

    ticket_id: str
    site: str
    seq: int
    ts: datetime


def check_reuse(new: TicketUse, previous: Sequence[TicketUse]) -> RuleAlarm | None:
    """``ticket_reused`` when ``new`` is a second use of a ticket (two gates, or twice at
    one). The same (site, seq) seen again is a resend, not a reuse."""
    others = [u for u in previous if u.ticket_id == new.ticket_id
              and (u.site, u.seq) != (new.site, new.seq)]
    if not others:
        return None
    uses = sorted([*others, new], key=lambda u: (u.ts, u.site, u.seq))
    return RuleAlarm(
        "ticket_reused",
        "critical",
        f"ticket_reused/{new.ticket_id}/{new.site}/{new.seq}",
        new.site,
        {
            "ticket_id": new.ticket_id,
            "uses": [
                {"site": u.site, "seq": u.seq, "ts": u.ts.astimezone(UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")}
                for u in uses
            ],
            "sites": sorted({u.site for u in uses}),
        },
    )


def find_reuses(uses: Iterable[TicketUse]) -> list[RuleAlarm]:
    """Batch form of :func:`check_reuse` (e.g. after gates come back from an outage): one
    alarm per later use of a ticket, in time order."""
    by_ticket: dict[str, list[TicketUse]] = defaultdict(list)
    for u in uses:
        by_ticket[u.ticket_id].append(u)
    alarms: list[RuleAlarm] = []
    for group in by_ticket.values():
        group.sort(key=lambda u: (u.ts, u.site, u.seq))
        seen: list[TicketUse] = []
        for u in group:
            alarm = check_reuse(u, seen)
            if alarm is not None:
                alarms.append(alarm)
            if all((s.site, s.seq) != (u.site, u.seq) for s in seen):
                seen.append(u)
    return alarms


@dataclass(frozen=True)
class WeighingFacts:
    """The fields of a verified ``weighing`` entry these rules need."""

    site: str
    seq: int
    txn: str
    pass_: Literal["tare", "gross", "one_pass"]
    ticket_id: str | None
    plate: str


def check_ticket_required(w: WeighingFacts, *, ticket_required: bool) -> RuleAlarm | None:
    """``no_ticket`` for a loaded weighing (gross or one-pass) with no ticket, when the
    site's policy requires one. A tare pass (empty truck in) needs no ticket."""
    if not ticket_required or w.pass_ == "tare" or w.ticket_id:
        return None
    return RuleAlarm(
        "no_ticket",
        "critical",
        f"no_ticket/{w.site}/{w.seq}",
        w.site,
        {"txn": w.txn, "seq": w.seq, "plate": w.plate},
    )


# --- The central's own re-check of a ticket named by a weighing (issue 12) -----------------

TicketCheck = Literal["exists", "validity", "plate", "net", "enterprise"]


@dataclass(frozen=True)
class IssuedTicket:
    """The central's record of a ticket: the fields a weighing is checked against."""

    ticket_id: str
    enterprise: str
    site: str  # the loading site the ticket names
    plate: str
    planned_net_kg: int
    valid_from: datetime
    valid_to: datetime
    voided_at: datetime | None


@dataclass(frozen=True)
class NetTolerance:
    """How far the weighed net may lie from the ticket's planned net: ± ``pct`` percent of the
    planned net or ± ``kg``, whichever is larger (the gate's default policy is 5 % / 500 kg)."""

    pct: float = 5.0
    kg: int = 500

    def allowed(self, planned_kg: int) -> int:
        return max(self.kg, int(planned_kg * self.pct / 100))


def recheck_ticket(
    ticket: IssuedTicket | None,
    *,
    at: datetime,
    plate: str | None,
    net_kg: int | None,
    enterprise: str | None,
    tolerance: NetTolerance,
    normalise: Callable[[str], str | None],
) -> dict[TicketCheck, dict[str, Any]]:
    """The checks a weighing at ``at`` fails against the central's own ticket table, each with
    what was expected and what was found. Empty: the ticket fits.

    Checked: the ticket exists; ``at`` lies in its validity window; the plate (both sides
    normalised, so ``陕K·7X215`` is ``陕K7X215``); the net within ``tolerance`` of the planned
    net (only when the weighing has a net); the issuing mine is the gate's enterprise. A voided
    ticket and a ticket of another loading site are ``invalid_ticket`` (revoked / wrong_site),
    raised by the reconciliation as before, so they are not repeated here.
    """
    if ticket is None:
        return {"exists": {"expected": "a ticket the central issued", "found": None}}
    failed: dict[TicketCheck, dict[str, Any]] = {}
    if not ticket.valid_from <= at <= ticket.valid_to:
        failed["validity"] = {"valid_from": _utc(ticket.valid_from),
                              "valid_to": _utc(ticket.valid_to), "weighed_at": _utc(at)}
    if plate is not None:
        ours = normalise(ticket.plate) or ticket.plate
        read = normalise(plate) or plate
        if ours != read:
            failed["plate"] = {"expected": ours, "found": read}
    if net_kg is not None:
        allowed = tolerance.allowed(ticket.planned_net_kg)
        if abs(net_kg - ticket.planned_net_kg) > allowed:
            failed["net"] = {"planned_net_kg": ticket.planned_net_kg, "net_kg": net_kg,
                             "tolerance_kg": allowed}
    if enterprise is not None and ticket.enterprise != enterprise:
        failed["enterprise"] = {"expected": enterprise, "found": ticket.enterprise}
    return failed


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
