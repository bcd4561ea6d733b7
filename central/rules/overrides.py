"""Operator overrides as facts at the central: which alarm an ``override`` entry raises, and what
it does to the weighing it names (docs/entry-kinds.md "Override alarms").

Every override a gate records reaches the bureau as an alarm of the ``override`` class (codes
``override_*``), so the bureau can filter them. A hand release of a held truck is the release
of that weighing: the reconciliation then counts it (tonnage "released by hand", ticket use,
quota). A void takes its weighing out of tonnage and quota. Pure: facts in, a decision out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from central.rules.model import AlarmDraft, Severity

__all__ = [
    "OVERRIDE_CODES",
    "OVERRIDE_PREFIX",
    "OverrideOutcome",
    "WeighingView",
    "judge_override",
]

OVERRIDE_PREFIX = "override_"
# action → alarm code. ``manual_barrier_up`` on an empty lane is ``open_lane`` on gates that
# know it (a supervisor action); older gates wrote it as a barrier-up with no transaction.
OVERRIDE_CODES: dict[str, str] = {
    "manual_barrier_up": "override_release",
    "open_lane": "override_open_lane",
    "manual_plate": "override_plate",
    "void": "override_void",
}
# Hold reasons the gate itself refuses to release by hand: a hand release after one of these
# means the gate's rules were bypassed.
_NEVER_BY_HAND = ("overload",)


@dataclass(frozen=True)
class WeighingView:
    """The site's latest weighing of the override's transaction, as the central stored it."""

    seq: int
    pass_: str
    decision: str | None
    reasons: tuple[str, ...]
    net_kg: int | None
    plate: str | None
    ticket_id: str | None
    voided: bool
    hand_released: bool


@dataclass(frozen=True)
class OverrideOutcome:
    alarm: AlarmDraft
    # The held weighing this override released by hand (it now counts), if any.
    releases: WeighingView | None = None
    # The weighing this override voided (it never counts), if any.
    voids: WeighingView | None = None


def _str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def judge_override(
    site: str, seq: int, body: Mapping[str, Any], weighing: WeighingView | None
) -> OverrideOutcome | None:
    """The alarm for one ``override`` entry at ``seq`` and its effect on ``weighing`` (the
    latest weighing of the entry's ``txn`` at the site, None when there is none).

    Severities: ``override_open_lane`` critical (the barrier opened with no weighing);
    ``override_release`` critical when there is no weighing to release, it was voided, or it
    was held for a reason the gate never releases by hand (overload), ``warning`` for any other
    hand release after a hold (no ticket, invalid ticket, plate mismatch, …), ``info`` when the
    barrier was raised again for a truck already released; ``override_void`` warning when the
    voided weighing had been released (its load no longer counts), else info;
    ``override_plate`` warning when the typed plate replaces a different read, else info.
    None for an action this central does not know (recorded, nothing raised).
    """
    action = _str(body, "action")
    code = OVERRIDE_CODES.get(action or "")
    if code is None:
        return None
    txn = _str(body, "txn")
    detail: dict[str, Any] = {
        "source": "central",
        "category": "override",
        "action": action,
        "operator": _str(body, "operator"),
        "role": _str(body, "role"),  # absent on gates older than operator accounts
        "reason": _str(body, "reason"),
    }
    if weighing is not None:
        detail.update(weighing_seq=weighing.seq, decision=weighing.decision,
                      hold_reasons=list(weighing.reasons), net_kg=weighing.net_kg,
                      plate=weighing.plate, ticket_id=weighing.ticket_id)
    severity: Severity = "info"
    releases = voids = None
    if action == "manual_barrier_up" and txn is None:
        code, severity = "override_open_lane", "critical"  # an old gate's empty-lane raise
        detail["no_weighing"] = True
    elif action == "open_lane":
        severity = "critical"
        detail["no_weighing"] = True
    elif action == "manual_barrier_up":
        if weighing is None or weighing.voided:
            severity = "critical"
            detail["no_weighing" if weighing is None else "voided"] = True
        elif weighing.decision == "release" or weighing.hand_released:
            severity = "info"  # raised again for a truck already released
        else:
            bypass = [r for r in weighing.reasons if r in _NEVER_BY_HAND]
            severity = "critical" if bypass else "warning"
            detail["released_by_hand"] = True
            releases = weighing
    elif action == "void":
        if weighing is not None and not weighing.voided:
            voids = weighing
            counted = weighing.decision == "release" or weighing.hand_released
            severity = "warning" if counted else "info"
            detail["was_released"] = counted
    elif action == "manual_plate":
        typed, read = _str(body, "plate"), _str(body, "read_plate")
        detail.update(plate=typed, read_plate=read)
        severity = "warning" if read is not None and read != typed else "info"
    alarm = AlarmDraft(site=site, code=code, severity=severity,
                       dedup_key=f"override:{seq}", seq=seq, txn=txn, detail=detail)
    return OverrideOutcome(alarm=alarm, releases=releases, voids=voids)
