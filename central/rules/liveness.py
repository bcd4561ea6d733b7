"""site_offline: a site with no status, heartbeat or entry for longer than the configured time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.rules.model import AlarmDraft
from central.settings import RuleSettings

__all__ = ["SiteLiveness", "offline_alarms", "is_offline"]


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
