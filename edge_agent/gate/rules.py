"""The decision rules: given a weighed truck, which alarm codes hold it. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.gate.policy import GatePolicy

# Alarm severities (docs/entry-kinds.md codes). Critical ones sound the horn.
SEVERITY: dict[str, str] = {
    "not_fully_on_platform": "critical",
    "unstable": "warning",
    "weight_jump": "critical",
    "second_vehicle": "critical",
    "plate_mismatch": "critical",
    "plate_unread": "warning",  # no credible plate in time: held until the operator types it
    "no_ticket": "critical",
    "invalid_ticket": "critical",
    "net_mismatch": "warning",
    "overload": "critical",
    "tare_out_of_band": "critical",
    "barrier_forced": "critical",
    "lane_opened_by_hand": "warning",  # a supervisor's open_lane (recorded override)
    "escape": "critical",
    "device_offline": "warning",
    "zero_drift": "warning",
}


@dataclass(frozen=True)
class TicketFacts:
    """What the decision needs from a ticket check."""

    ok: bool
    reason: str  # "ok" or a ticket_check result code
    ticket_id: str | None
    planned_net_kg: int | None


@dataclass(frozen=True)
class Weighed:
    pass_kind: str  # "tare" | "gross" | "one_pass"
    weight_kg: int
    tare_kg: int | None  # gross/one_pass: the tare used
    axles: int | None
    tare_median: tuple[int, int] | None  # (median, count) of the truck's tare history
    ticket: TicketFacts | None


def ticket_reasons(policy: GatePolicy, t: TicketFacts | None, net_kg: int | None) -> list[str]:
    if t is None:
        return ["no_ticket"] if policy.ticket_required else []
    if not t.ok:
        return ["plate_mismatch" if t.reason == "wrong_plate" else "invalid_ticket"]
    if net_kg is not None and t.planned_net_kg is not None:
        if abs(net_kg - t.planned_net_kg) > policy.net_tolerance(t.planned_net_kg):
            return ["net_mismatch"]
    return []


def decide(policy: GatePolicy, w: Weighed) -> list[str]:
    """Alarm codes that hold this truck; empty means release.

    The overload check always applies; ticket checks apply to loaded passes where the site
    requires a ticket (a bad ticket shown voluntarily is still an alarm, see ``advisory``).
    """
    reasons: list[str] = []
    if w.weight_kg > policy.limit_for(w.axles):
        reasons.append("overload")
    if w.pass_kind == "tare" and w.tare_median is not None:
        median, count = w.tare_median
        if count >= policy.tare_history_min and abs(w.weight_kg - median) > policy.tare_band(
            median
        ):
            reasons.append("tare_out_of_band")
    if w.pass_kind in ("gross", "one_pass") and policy.ticket_required:
        net = w.weight_kg - w.tare_kg if w.tare_kg is not None else None
        reasons += ticket_reasons(policy, w.ticket, net)
    return reasons


def advisory(policy: GatePolicy, w: Weighed) -> list[str]:
    """Alarms that are recorded but do not hold (a site that does not require tickets)."""
    if policy.ticket_required or w.ticket is None or w.pass_kind == "tare":
        return []
    net = w.weight_kg - w.tare_kg if w.tare_kg is not None else None
    return ticket_reasons(policy, w.ticket, net)
