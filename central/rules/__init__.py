"""Pure alarm rules: verified entry facts and a clock in, alarm drafts and rule state out."""

from central.rules.entries import RuleOutcome, evaluate
from central.rules.liveness import (
    GateView,
    SiteLiveness,
    is_offline,
    offline_alarms,
    stalled_alarms,
    stalled_for,
)
from central.rules.model import AlarmDraft, EntryFacts, Lookups, PendingAlarm, SiteRuleState

__all__ = [
    "AlarmDraft",
    "EntryFacts",
    "GateView",
    "Lookups",
    "PendingAlarm",
    "RuleOutcome",
    "SiteLiveness",
    "SiteRuleState",
    "evaluate",
    "is_offline",
    "offline_alarms",
    "stalled_alarms",
    "stalled_for",
]
