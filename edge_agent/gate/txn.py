"""The transaction record: one truck's visit as the gate sees it, and the phases it goes through.

idle → entering → on_platform (both IR beams clear) → identify (stable; plate, ticket) →
decide → record → released (barrier up) → leaving → idle, or → held (barrier stays down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.gate.events import PlateRead
from edge_agent.gate.rules import TicketFacts

# Phases of the gate (``GateController.state``; the console and the runtime log show them).
IDLE = "idle"
ENTERING = "entering"
ON_PLATFORM = "on_platform"
IDENTIFY = "identify"
HELD = "held"
RELEASED = "released"
LEAVING = "leaving"
RECOVERING = "recovering"

PENDING_TICKET_MS = 120_000  # a QR scanned just before the truck drove on still counts


@dataclass
class Txn:
    id: str
    started_ms: int
    plates: list[PlateRead] = field(default_factory=list)
    plate_times: list[tuple[PlateRead, int]] = field(default_factory=list)
    manual_plate: str | None = None
    qr_text: str | None = None
    ticket: TicketFacts | None = None
    ticket_checked_for: str | None = None
    beams_clear_once: bool = False
    clear_weight: int = 0  # last weight seen with both beams clear
    on_platform_ms: int | None = None
    blocked_since_ms: int | None = None
    stable_kg: int | None = None
    stable_ms: int | None = None
    identify_ms: int | None = None
    platform_kg: list[tuple[int, int]] = field(default_factory=list)  # (ms, kg), beams clear
    flags: list[str] = field(default_factory=list)  # anomalies seen before the decision
    alarms_raised: set[str] = field(default_factory=set)
    weighing: dict[str, Any] | None = None
    weighing_seq: int | None = None
    released: bool = False
    overridden: bool = False  # released by an operator: they answer for what follows
    passages: int = 0
    exit_seen: bool = False  # the exit beam was blocked while this truck was on the platform
    exit_cleared: bool = False  # released truck's rear has cleared the exit beam
    voided: bool = False
    min_conf_pm: int = 900  # GatePolicy.plate_min_conf_pm when the transaction began
    left_entry_loop: bool = False  # this truck has driven off the entry loop
    next_arrival_ms: int | None = None  # another vehicle reached the entry loop at this time
    reader_done: bool = False  # the gate's own reader reported for this truck
    alone_kg: int | None = None  # its weight before a second vehicle came on behind it

    @property
    def plate(self) -> PlateRead | None:
        """The plate this truck is weighed under: typed by the operator, or the most
        confident read at or above the site's threshold. Lower reads are only candidates."""
        if self.manual_plate is not None:
            return PlateRead(self.manual_plate, 1000, "manual")
        credible = [p for p in self.plates if p.conf_pm >= self.min_conf_pm]
        return max(credible, key=lambda p: p.conf_pm) if credible else None

    @property
    def candidate(self) -> PlateRead | None:
        """The most confident read of any confidence (what the operator is shown)."""
        return max(self.plates, key=lambda p: p.conf_pm) if self.plates else None

    @property
    def waiting_for_plate(self) -> bool:
        """Held only because no credible plate came: a plate (read or typed) resumes it."""
        return (self.weighing is None and self.plate is None and not self.flags
                and "plate_unread" in self.alarms_raised)


@dataclass(frozen=True)
class RecoveredTxn:
    """The last transaction found open in the ledger at start-up (after a power cut)."""

    txn: str
    weighing: dict[str, Any] | None
    weighing_seq: int | None
    barrier_up: bool
