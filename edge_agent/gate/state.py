"""What the gate knows between events, and the few steps every part of the controller takes:
open and close a transaction, raise an alarm, move the barrier, set the signals.

The handlers for each kind of event (``platform``, ``identify``, ``decision``, ``passage``,
``overrides``, ``recovery``) are functions over a :class:`GateState`; ``GateController`` is the
``GateState`` that dispatches events to them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from edge_agent.gate.book import VehicleBook
from edge_agent.gate.events import Action, Barrier, Inputs, PlateRead, Record, Signals
from edge_agent.gate.policy import GatePolicy
from edge_agent.gate.rules import SEVERITY
from edge_agent.gate.txn import IDLE, PENDING_TICKET_MS, RECOVERING, RELEASED, RecoveredTxn, Txn
from edge_agent.stability import StabilityDetector, StabilityPolicy


class TicketCheckLike(Protocol):
    ok: bool
    reason: str
    ticket: Any
    message: str


class TicketVerifier(Protocol):
    """edge_agent.tickets.GateTicketVerifier, or a plain fake in tests."""

    def check(self, qr_text: str, *, plate: str, now: datetime) -> TicketCheckLike: ...

    def mark_used(self, ticket_id: str, *, seq: int, now: datetime) -> None: ...


class GateState:
    def __init__(
        self,
        policy: GatePolicy,
        *,
        book: VehicleBook | None = None,
        verifier: TicketVerifier | None = None,
        recovered: RecoveredTxn | None = None,
    ) -> None:
        self.policy = policy
        self.book = book or VehicleBook()
        self.verifier = verifier
        self.stab = StabilityDetector(
            StabilityPolicy(
                e_kg=policy.e_kg,
                window_ms=policy.stability_window_ms,
                zero_band_kg=policy.zero_band_kg,
            )
        )
        self.state = RECOVERING if recovered else IDLE
        self.recovered = recovered
        self.io = Inputs()
        self.io_known = False  # no transaction starts before the beams and loops are read
        self.weight: int | None = None
        self.last_sample_ms: int | None = None
        self.txn: Txn | None = None
        self.last_txn: Txn | None = None
        self.barrier_cmd_up = False
        self.offline: set[str] = set()
        self.pending_qr: tuple[str, int] | None = None
        self.last_plates: list[tuple[PlateRead, int]] = []
        self.signals = Signals(red=False, green=False, horn=False)
        self.zero_alarm = False
        self.last_decision: dict[str, Any] | None = None
        self.lane_open_until_ms: int | None = None  # a supervisor's open_lane, until then
        # An uncommanded barrier-up being answered: (next "down" at, retries so far).
        self.forced_down: tuple[int, int] | None = None
        self.empty_since_ms: int | None = None  # platform empty while a transaction is open
        self.last_weighing_ms: int | None = None  # for the status heartbeat
        self.waiting_since_ms: int | None = None  # a truck at the gate, passage not completed

    def day(self, now_ms: int) -> str:
        offset = timedelta(hours=self.policy.utc_offset_h)
        local = datetime.fromtimestamp(now_ms / 1000, UTC) + offset
        return local.strftime("%Y%m%d")

    @staticmethod
    def dt(now_ms: int) -> datetime:
        return datetime.fromtimestamp(now_ms / 1000, UTC)

    def begin(self, now_ms: int) -> Txn:
        txn = Txn(id=self.book.next_txn(self.policy.site_id, self.day(now_ms)), started_ms=now_ms,
                  min_conf_pm=self.policy.plate_min_conf_pm)
        # Plates and QR codes read while the truck was still on the approach belong to it.
        queued: list[tuple[PlateRead, int]] = []
        for p, ts in self.last_plates:
            if now_ms - ts > PENDING_TICKET_MS:
                continue
            if any(r.camera == p.camera and r.plate != p.plate for r in txn.plates):
                queued.append((p, ts))  # the camera already saw this truck: it's the next one
            else:
                txn.plates.append(p)
                txn.plate_times.append((p, ts))
        if self.pending_qr and now_ms - self.pending_qr[1] <= PENDING_TICKET_MS:
            txn.qr_text = self.pending_qr[0]
        self.pending_qr = None
        self.last_plates = queued
        self.txn = txn
        self.stab.reset()
        return txn

    def finish(self) -> None:
        self.last_txn = self.txn
        self.txn = None
        self.state = IDLE
        self.stab.reset()

    def queue_plate(self, ev: PlateRead, now_ms: int) -> None:
        """Keep a read for the next truck (the last ten, for as long as a QR would wait)."""
        self.last_plates = [(p, ts) for p, ts in self.last_plates
                            if now_ms - ts <= PENDING_TICKET_MS][-9:] + [(ev, now_ms)]

    def alarm(
        self, code: str, out: list[Action], detail: dict[str, Any] | None = None,
        txn: Txn | None = None,
    ) -> None:
        """Record an alarm, once per code and transaction."""
        t = txn if txn is not None else self.txn
        if t is not None:
            if code in t.alarms_raised:
                return
            t.alarms_raised.add(code)
        out.append(
            Record(
                "alarm",
                {
                    "code": code,
                    "severity": SEVERITY.get(code, "warning"),
                    "txn": t.id if t else None,
                    "detail": detail or {},
                },
            )
        )

    def alarm_device(self, device: str, detail: dict[str, Any], out: list[Action]) -> None:
        out.append(Record("alarm", {"code": "device_offline", "severity": "warning",
                                    "txn": self.txn.id if self.txn else None,
                                    "detail": {"device": device, **detail}}))

    def command_barrier(
        self, up: bool, cause: str, out: list[Action], txn: Txn | None = None
    ) -> None:
        t = txn if txn is not None else self.txn
        out.append(Record("barrier", {"txn": t.id if t else None, "action": "up" if up else "down",
                                      "cause": cause}))
        out.append(Barrier(up=up))
        self.barrier_cmd_up = up
        if up:
            self.forced_down = None
        self.lane_open_until_ms = None  # any command ends an open lane (open_lane resets it)

    def changed_signals(self) -> list[Action]:
        """The traffic light and horn, when they differ from what was last sent."""
        t = self.txn
        horn = bool(t and any(SEVERITY.get(a) == "critical" for a in t.alarms_raised)
                    and not t.released)
        sig = Signals(red=self.state != IDLE, green=self.state in (IDLE, RELEASED), horn=horn)
        if sig != self.signals:
            self.signals = sig
            return [sig]
        return []

    def ref_txn(self) -> Txn | None:
        return self.txn or self.last_txn

    def occupied(self) -> bool:
        return self.weight is not None and self.weight >= self.policy.min_vehicle_kg
