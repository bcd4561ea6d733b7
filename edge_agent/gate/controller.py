"""The gate controller: a pure state machine fed with events and a clock, returning actions.

idle → entering → on_platform (both IR beams clear) → identify (stable; plate, ticket) →
decide → record → released (barrier up) → leaving → idle, or → held (barrier stays down).
Fail closed: nothing but a clean decision (or a recorded operator override) raises the barrier.

This module dispatches; each concern has its own module of functions over the gate's state:
``platform`` (weight against the beams), ``identify`` (plates, QR), ``decision`` (rules, the
weighing record, release or hold), ``passage`` (beams and loops at the exit, escapes),
``overrides`` (the operator), ``recovery`` (after a power cut).
"""

from __future__ import annotations

from typing import Any

from edge_agent.gate.decision import decide_now, hold_unread, try_decide
from edge_agent.gate.events import (
    Action,
    Barrier,
    DeviceStatus,
    Event,
    Inputs,
    MarkTicketUsed,
    Operator,
    PlateRead,
    Record,
    Recorded,
    Tick,
    TicketScan,
    WeightSample,
)
from edge_agent.gate.identify import on_plate, on_ticket
from edge_agent.gate.overrides import OperatorRefused, on_operator
from edge_agent.gate.passage import on_inputs
from edge_agent.gate.platform import on_weight
from edge_agent.gate.state import GateState, TicketVerifier
from edge_agent.gate.txn import HELD, IDENTIFY, ON_PLATFORM, RELEASED, RecoveredTxn

__all__ = ["GateController", "OperatorRefused", "RecoveredTxn", "TicketVerifier"]


class GateController(GateState):
    """``GateController(policy, book=, verifier=, recovered=)``; feed it with ``handle``."""

    def start(self, now_ms: int) -> list[Action]:
        """Actions at start-up: barrier down unless a released truck is being resumed."""
        out: list[Action] = []
        if not (self.recovered and self.recovered.barrier_up):
            out.append(Barrier(up=False))
        out += self.changed_signals()
        return out

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, WeightSample):
            on_weight(self, event, now_ms, out)
        elif isinstance(event, Inputs):
            on_inputs(self, event, now_ms, out)
        elif isinstance(event, PlateRead):
            on_plate(self, event, now_ms, out)
        elif isinstance(event, TicketScan):
            on_ticket(self, event, now_ms, out)
        elif isinstance(event, DeviceStatus):
            self._on_device(event, out)
        elif isinstance(event, Operator):
            on_operator(self, event, now_ms, out)
        elif isinstance(event, Recorded):
            self._on_recorded(event, out)
        elif isinstance(event, Tick):
            pass
        self._on_time(now_ms, out)
        out += self.changed_signals()
        return out

    def snapshot(self) -> dict[str, Any]:
        """State for the operator console and the MQTT ``live`` topic."""
        t = self.txn
        plate = t.plate if t else None
        cand = t.candidate if t else None
        return {
            "state": self.state,
            "weight_kg": self.weight,
            "stable": self.stab.current() is not None,
            "io": vars(self.io).copy(),
            "barrier_cmd_up": self.barrier_cmd_up,
            "txn": t.id if t else None,
            "plate": plate.plate if plate else None,
            "plate_source": plate.source if plate else None,
            "plate_conf_pm": plate.conf_pm if plate else None,
            "plate_candidate": None if cand is None else {
                "plate": cand.plate, "conf_pm": cand.conf_pm, "source": cand.source,
                "snapshot_sha256": cand.snapshot_sha256},
            "plate_prompt": self._plate_prompt(),
            "plate_min_conf_pm": self.policy.plate_min_conf_pm,
            "ticket": (t.ticket.ticket_id if t and t.ticket else None),
            "ticket_result": (t.ticket.reason if t and t.ticket else None),
            "flags": list(t.flags) if t else [],
            "decision": self.last_decision,
            "offline": sorted(self.offline),
        }

    def _plate_prompt(self) -> bool:
        """The console asks the operator for the plate: a truck stands with no credible plate
        and the reader gave only a low-confidence candidate, or the wait timed out."""
        t = self.txn
        if t is None or t.weighing is not None or t.plate is not None:
            return False
        if self.state not in (ON_PLATFORM, IDENTIFY, HELD):
            return False
        return bool(t.plates) or "plate_unread" in t.alarms_raised

    def _on_device(self, ev: DeviceStatus, out: list[Action]) -> None:
        if ev.online == (ev.device not in self.offline):
            return
        if ev.online:
            self.offline.discard(ev.device)
        else:
            self.offline.add(ev.device)
        out.append(Record("device", {"device": ev.device,
                                     "state": "online" if ev.online else "offline",
                                     "detail": ev.detail}))
        if not ev.online:
            self.alarm_device(ev.device, ev.detail, out)

    def _on_recorded(self, ev: Recorded, out: list[Action]) -> None:
        """The ledger has the weighing: its seq names the tare, and a used ticket is marked."""
        if not ev.ref.startswith("weighing:"):
            return
        txn_id = ev.ref.split(":", 1)[1]
        self.book.set_tare_seq(txn_id, ev.seq)
        for t in (self.txn, self.last_txn):
            if t is not None and t.id == txn_id:
                t.weighing_seq = ev.seq
                if t.released and t.ticket and t.ticket.ok and t.ticket.ticket_id:
                    out.append(MarkTicketUsed(t.ticket.ticket_id, ev.seq))

    def _on_time(self, now_ms: int, out: list[Action]) -> None:
        """Timers, checked after every event: a silent scale, a truck that never settles,
        the identification wait, a release nobody drove through."""
        p = self.policy
        if (
            self.last_sample_ms is not None
            and now_ms - self.last_sample_ms > p.device_timeout_ms
            and "scale" not in self.offline
        ):
            self.offline.add("scale")
            detail = {"silent_ms": now_ms - self.last_sample_ms}
            out.append(Record("device", {"device": "scale", "state": "offline", "detail": detail}))
            self.alarm_device("scale", detail, out)
        t = self.txn
        if t is None:
            return
        if self.state == ON_PLATFORM and t.on_platform_ms is not None and t.stable_kg is None:
            if now_ms - t.on_platform_ms > p.unstable_timeout_ms:
                if "unstable" not in t.flags:
                    t.flags.append("unstable")
                self.alarm("unstable", out, {"weight_kg": self.weight,
                                             "on_platform_ms": now_ms - t.on_platform_ms})
        if self.state == IDENTIFY and t.weighing is None:
            waited = now_ms - (t.identify_ms or now_ms)
            if waited < p.identify_timeout_ms:
                try_decide(self, now_ms, out)
            elif t.plate is not None:
                decide_now(self, now_ms, out)
            else:
                hold_unread(self, t, waited, out)
        if self.state == RELEASED and self.barrier_cmd_up and t.released and not t.passages:
            if now_ms - (t.started_ms) > p.release_timeout_ms + p.identify_timeout_ms * 4:
                self.command_barrier(False, "timeout", out)
