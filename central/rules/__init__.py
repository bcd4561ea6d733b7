"""Pure alarm rules: verified entry facts and a clock in, alarm drafts and rule state out."""

from central.rules.entries import RuleOutcome, evaluate
from central.rules.liveness import SiteLiveness, is_offline, offline_alarms
from central.rules.model import AlarmDraft, EntryFacts, Lookups, PendingAlarm, SiteRuleState

__all__ = [
    "AlarmDraft",
    "EntryFacts",
    "Lookups",
    "PendingAlarm",
    "RuleOutcome",
    "SiteLiveness",
    "SiteRuleState",
    "evaluate",
    "is_offline",
    "offline_alarms",
]
