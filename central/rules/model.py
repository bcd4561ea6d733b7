"""Values the alarm rules take and return: entry facts, per-site rule state, alarm drafts.

The rules are pure: they read these values and a clock reading and return new values. The
projection (central.projections) loads the state and lookups from the database, runs the rules
and writes the drafts, all inside the ingest's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "AlarmDraft",
    "EntryFacts",
    "Lookups",
    "Severity",
    "SiteRuleState",
]

Severity = Literal["critical", "warning", "info"]


class EntryFacts(Protocol):
    """What the rules read from a verified entry; ``ledger.entry.Entry`` satisfies it."""

    @property
    def site(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def body(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class AlarmDraft:
    """An alarm to store. ``dedup_key`` is unique per site: storing a draft twice is a no-op, and
    the gate's own alarm for a fact the central already derived lands on the same row."""

    site: str
    code: str
    severity: Severity
    dedup_key: str
    seq: int | None = None
    txn: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingAlarm:
    """A null-txn alarm that the other source (gate or central) may still report."""

    code: str
    seq: int
    source: Literal["central", "gate"]
    dedup_key: str


@dataclass(frozen=True)
class SiteRuleState:
    """What the rules remember about a site between batches (stored as JSON)."""

    barrier: str | None = None  # last barrier action seen: "up" / "down"
    ticket_required: bool | None = None  # from the site's latest `config` entry
    last_ts: str | None = None  # previous entry's ts, to see the clock jump back
    skewed: bool = False  # a clock_skew alarm is out and the clock has not recovered
    pending: tuple[PendingAlarm, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "barrier": self.barrier,
            "ticket_required": self.ticket_required,
            "last_ts": self.last_ts,
            "skewed": self.skewed,
            "pending": [[p.code, p.seq, p.source, p.dedup_key] for p in self.pending],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> SiteRuleState:
        if not obj:
            return cls()
        return cls(
            barrier=obj.get("barrier"),
            ticket_required=obj.get("ticket_required"),
            last_ts=obj.get("last_ts"),
            skewed=bool(obj.get("skewed", False)),
            pending=tuple(
                PendingAlarm(code=p[0], seq=int(p[1]), source=p[2], dedup_key=p[3])
                for p in obj.get("pending", ())
            ),
        )


@dataclass(frozen=True)
class Lookups:
    """Facts from earlier batches that some rules need, fetched by the projection.

    ``tare_plates``: seq → plate of the site's tare weighings referenced by ``tare_seq`` in the
    batch. ``tare_history``: plate → the plate's recent measured tares at this site, oldest first.
    ``txn_plates``: txn → plate, for the batch's passages and alarms whose weighing came earlier
    (so an escape alarm names the truck).
    """

    tare_plates: Mapping[int, str] = field(default_factory=dict)
    tare_history: Mapping[str, Sequence[int]] = field(default_factory=dict)
    txn_plates: Mapping[str, str] = field(default_factory=dict)
