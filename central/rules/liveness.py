"""site_offline: a site with no status, heartbeat or entry for longer than the configured time.
gate_stalled: a site that is online, but whose gate (by its status heartbeat) has had a truck
waiting with no weighing for longer than the configured time (issue 12: a stuck gate kept
its site green 在线)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from central.rules.model import AlarmDraft
from central.settings import RuleSettings

__all__ = ["GateView", "SiteLiveness", "is_offline", "offline_alarms", "stalled_alarms",
           "stalled_for"]


@dataclass(frozen=True)
class SiteLiveness:
    site: str
    last_seen: datetime | None  # any message from the site; None: never heard from
    enrolled_at: datetime


def is_offline(view: SiteLiveness, now: datetime, rules: RuleSettings) -> bool:
    # A site never heard from counts from its enrolment, so a new site gets a grace period.
    since = view.last_seen or view.enrolled_at
    return now - since > timedelta(seconds=rules.offline_after_s)


def offline_alarms(
    views: Iterable[SiteLiveness], now: datetime, rules: RuleSettings
) -> list[AlarmDraft]:
    """One site_offline draft per site that is offline at ``now``.

    The dedup key names the silence (its last_seen), so sweeping again — from this process or
    another API instance — raises nothing new until the site has been back and gone again.
    """
    drafts = []
    for view in views:
        if not is_offline(view, now, rules):
            continue
        since = view.last_seen or view.enrolled_at
        drafts.append(
            AlarmDraft(
                site=view.site,
                code="site_offline",
                severity="critical",
                dedup_key=f"site_offline:{since.isoformat()}",
                detail={
                    "source": "central",
                    "last_seen": view.last_seen.isoformat() if view.last_seen else None,
                    "silent_s": int((now - since).total_seconds()),
                },
            )
        )
    return drafts


@dataclass(frozen=True)
class GateView:
    site: str
    online: bool  # reported online and heard from recently (is_offline is the other alarm)
    gate: dict[str, Any] | None  # the heartbeat's ``gate`` object, as stored


def _ts(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def stalled_for(view: GateView, now: datetime, rules: RuleSettings) -> timedelta | None:
    """How long the gate has gone without weighing while a truck waits, once that is past
    ``gate_stalled_after_s``; None when it is not stalled (or says nothing about itself)."""
    g = view.gate
    if not view.online or not isinstance(g, dict):
        return None
    waiting = _ts(g.get("waiting_since"))
    if waiting is None:
        return None
    last = _ts(g.get("last_weighing_ts"))
    since = max(waiting, last) if last is not None else waiting
    quiet = now - since
    return quiet if quiet > timedelta(seconds=rules.gate_stalled_after_s) else None


def stalled_alarms(
    views: Iterable[GateView], now: datetime, rules: RuleSettings
) -> list[AlarmDraft]:
    """One gate_stalled draft per stalled gate; the dedup key names the wait, so one wait
    raises one alarm however often the sweep runs."""
    drafts = []
    for view in views:
        quiet = stalled_for(view, now, rules)
        if quiet is None:
            continue
        g = view.gate or {}
        drafts.append(AlarmDraft(
            site=view.site, code="gate_stalled", severity="critical",
            dedup_key=f"gate_stalled:{g.get('waiting_since')}",
            detail={"source": "central", "gate_state": g.get("state"),
                    "waiting_since": g.get("waiting_since"),
                    "last_weighing_ts": g.get("last_weighing_ts"),
                    "minutes": int(quiet.total_seconds() // 60)},
        ))
    return drafts
