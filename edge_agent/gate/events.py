"""What the gate controller is fed (events) and what it asks for (actions).

Events carry no time: the caller passes ``now_ms`` (milliseconds since the Unix epoch, UTC)
with each one, so tests drive a simulated clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OperatorAction = Literal["manual_plate", "manual_barrier_up", "void", "open_lane"]


@dataclass(frozen=True)
class WeightSample:
    kg: int
    motion: bool = False  # the indicator's own motion flag, when it has one


@dataclass(frozen=True)
class Inputs:
    """A snapshot of the gate's discrete inputs (1 = active), read together."""

    ir_entry: bool = False  # entry beam blocked
    ir_exit: bool = False
    loop_entry: bool = False
    loop_exit: bool = False
    barrier_up: bool = False  # feedback: fully up
    barrier_down: bool = True  # feedback: fully down


@dataclass(frozen=True)
class PlateRead:
    plate: str
    conf_pm: int = 1000
    source: Literal["anpr", "reader", "manual"] = "anpr"
    camera: str = "front"
    axles: int | None = None
    snapshot_sha256: str | None = None
    # When the frame was taken (ms since the epoch; None = when the event arrives). A read
    # that arrives late is attributed by this time, not by its arrival (docs/plates.md).
    seen_ms: int | None = None
    # The transaction the gate's own reader took the frames for (None for pushed ANPR reads).
    txn: str | None = None
    role: str = "operator"  # the authenticated account's role: operator | supervisor


@dataclass(frozen=True)
class TicketScan:
    qr_text: str


@dataclass(frozen=True)
class DeviceStatus:
    device: str
    online: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operator:
    action: OperatorAction
    operator: str
    reason: str
    plate: str | None = None
    txn: str | None = None
    role: str = "operator"  # the authenticated account's role: operator | supervisor


@dataclass(frozen=True)
class Tick:
    """Time passes (the runtime sends one at least every few hundred ms)."""


@dataclass(frozen=True)
class Recorded:
    """The runtime appended a ``Record`` action that asked for a reply (``ref``)."""

    ref: str
    seq: int


Event = WeightSample | Inputs | PlateRead | TicketScan | DeviceStatus | Operator | Tick | Recorded


@dataclass(frozen=True)
class Record:
    """Append a ledger entry (kind/body per docs/entry-kinds.md)."""

    kind: str
    body: dict[str, Any]
    ref: str | None = None  # when set, the runtime answers with Recorded(ref, seq)


@dataclass(frozen=True)
class Barrier:
    up: bool


@dataclass(frozen=True)
class Signals:
    """Level outputs: traffic light and horn."""

    red: bool
    green: bool
    horn: bool


@dataclass(frozen=True)
class MarkTicketUsed:
    ticket_id: str
    seq: int


Action = Record | Barrier | Signals | MarkTicketUsed
