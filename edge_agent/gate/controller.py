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
from edge_agent.gate.txn import (
    HELD,
    IDENTIFY,
    IDLE,
    ON_PLATFORM,
    RECOVERING,
    RELEASED,
    RecoveredTxn,
)

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
        self._on_clock(now_ms, out)
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
            "weighed": bool(t and t.weighing is not None),
            "lane_open": self.lane_open_until_ms is not None,
            "barrier_forced": self.forced_down is not None,
        }

    def gate_status(self) -> dict[str, Any]:
        """The gate's situation for the ``status`` heartbeat (docs/protocol.md): its phase,
        when it last recorded a weighing and since when a truck waits at it (ms, UTC)."""
        return {"state": self.state, "last_weighing_ms": self.last_weighing_ms,
                "waiting_since_ms": self.waiting_since_ms}

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

    def _on_clock(self, now_ms: int, out: list[Action]) -> None:
        """The fail-closed timers that run whatever the phase: a forced barrier is commanded
        down again until the feedback agrees, an opened lane closes, and a transaction whose
        truck is gone (platform empty) is closed so the gate always comes back to idle."""
        p = self.policy
        if self.forced_down is not None and not self.barrier_cmd_up:
            at, n = self.forced_down
            if now_ms >= at:
                out.append(Barrier(up=False))  # repeat the command; the entry was written once
                delay = p.forced_retry_ms[min(n + 1, len(p.forced_retry_ms) - 1)]
                self.forced_down = (now_ms + delay, n + 1)
        if self.lane_open_until_ms is not None and now_ms >= self.lane_open_until_ms:
            self.command_barrier(False, "open_lane", out)
        self._close_when_empty(now_ms, out)
        self._track_waiting(now_ms)

    def _close_when_empty(self, now_ms: int, out: list[Action]) -> None:
        """Invariant: the gate never stays in a transaction with an empty platform. The stuck
        gate of issue 12 (weight_jump while driving off, the next truck already waiting in the
        entry beam so the held transaction was never abandoned, then released by hand) sat at
        已放行 / 0 kg for good and ignored every truck after it."""
        io = self.io
        empty = (
            self.txn is not None and self.state not in (IDLE, RECOVERING)
            and self.weight is not None and self.stab.at_zero(self.weight)
            and "scale" not in self.offline and not io.ir_exit
        )  # the entry beam may be blocked: by the next truck, waiting off the scale
        if not empty:
            self.empty_since_ms = None
            return
        if self.empty_since_ms is None:
            self.empty_since_ms = now_ms
        quiet = now_ms - self.empty_since_ms
        # The exit loop still occupied: the truck may stand under the arm; wait longer.
        bound = self.policy.empty_close_ms if not io.loop_exit else self.policy.release_timeout_ms
        if quiet < bound:
            return
        t = self.txn
        assert t is not None
        if self.barrier_cmd_up:
            self.command_barrier(False, "platform_empty", out)
        self.empty_since_ms = None
        self.finish()

    def _track_waiting(self, now_ms: int) -> None:
        """Since when a truck has been at the gate without its passage completing (status)."""
        busy = self.txn is not None and self.state not in (IDLE, RECOVERING)
        if not busy:
            self.waiting_since_ms = None
        elif self.waiting_since_ms is None:
            self.waiting_since_ms = now_ms
