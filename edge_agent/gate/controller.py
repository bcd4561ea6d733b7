"""The gate controller: a pure state machine fed with events and a clock, returning actions.

idle → entering → on_platform (both IR beams clear) → identify (stable; plate, ticket) →
decide → record → released (barrier up) → leaving → idle, or → held (barrier stays down).
Fail closed: nothing but a clean decision (or a recorded operator override) raises the barrier.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from edge_agent.gate.book import TareRecord, VehicleBook
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
    Signals,
    Tick,
    TicketScan,
    WeightSample,
)
from edge_agent.gate.policy import GatePolicy
from edge_agent.gate.rules import SEVERITY, TicketFacts, Weighed, advisory, decide
from edge_agent.stability import StabilityDetector, StabilityPolicy

IDLE = "idle"
ENTERING = "entering"
ON_PLATFORM = "on_platform"
IDENTIFY = "identify"
HELD = "held"
RELEASED = "released"
LEAVING = "leaving"
RECOVERING = "recovering"

PENDING_TICKET_MS = 120_000  # a QR scanned just before the truck drove on still counts


class TicketCheckLike(Protocol):
    ok: bool
    reason: str
    ticket: Any
    message: str


class TicketVerifier(Protocol):
    """edge_agent.tickets.GateTicketVerifier, or a plain fake in tests."""

    def check(self, qr_text: str, *, plate: str, now: datetime) -> TicketCheckLike: ...

    def mark_used(self, ticket_id: str, *, seq: int, now: datetime) -> None: ...


class OperatorRefused(Exception):
    """An operator action that the gate will not carry out (the message says why)."""


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


class GateController:
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

    # ----------------------------------------------------------------- public
    def start(self, now_ms: int) -> list[Action]:
        """Actions at start-up: barrier down unless a released truck is being resumed."""
        out: list[Action] = []
        if not (self.recovered and self.recovered.barrier_up):
            out.append(Barrier(up=False))
        out += self._signals()
        return out

    def handle(self, event: Event, now_ms: int) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, WeightSample):
            self._on_weight(event, now_ms, out)
        elif isinstance(event, Inputs):
            self._on_inputs(event, now_ms, out)
        elif isinstance(event, PlateRead):
            self._on_plate(event, now_ms, out)
        elif isinstance(event, TicketScan):
            self._on_ticket(event, now_ms, out)
        elif isinstance(event, DeviceStatus):
            self._on_device(event, now_ms, out)
        elif isinstance(event, Operator):
            self._on_operator(event, now_ms, out)
        elif isinstance(event, Recorded):
            self._on_recorded(event, now_ms, out)
        elif isinstance(event, Tick):
            pass
        self._on_time(now_ms, out)
        out += self._signals()
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

    # ----------------------------------------------------------------- helpers
    def _day(self, now_ms: int) -> str:
        offset = timedelta(hours=self.policy.utc_offset_h)
        local = datetime.fromtimestamp(now_ms / 1000, UTC) + offset
        return local.strftime("%Y%m%d")

    @staticmethod
    def _dt(now_ms: int) -> datetime:
        return datetime.fromtimestamp(now_ms / 1000, UTC)

    def _begin(self, now_ms: int) -> Txn:
        txn = Txn(id=self.book.next_txn(self.policy.site_id, self._day(now_ms)), started_ms=now_ms,
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

    def _alarm(
        self, code: str, out: list[Action], detail: dict[str, Any] | None = None,
        txn: Txn | None = None,
    ) -> None:
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

    def _barrier(self, up: bool, cause: str, out: list[Action], txn: Txn | None = None) -> None:
        t = txn if txn is not None else self.txn
        out.append(Record("barrier", {"txn": t.id if t else None, "action": "up" if up else "down",
                                      "cause": cause}))
        out.append(Barrier(up=up))
        self.barrier_cmd_up = up

    def _signals(self) -> list[Action]:
        t = self.txn
        horn = bool(t and any(SEVERITY.get(a) == "critical" for a in t.alarms_raised)
                    and not t.released)
        sig = Signals(red=self.state != IDLE, green=self.state in (IDLE, RELEASED), horn=horn)
        if sig != self.signals:
            self.signals = sig
            return [sig]
        return []

    def _finish(self) -> None:
        self.last_txn = self.txn
        self.txn = None
        self.state = IDLE
        self.stab.reset()

    # ----------------------------------------------------------------- weight
    def _on_weight(self, ev: WeightSample, now_ms: int, out: list[Action]) -> None:
        p = self.policy
        if "scale" in self.offline:
            self.offline.discard("scale")
            out.append(Record("device", {"device": "scale", "state": "online", "detail": {}}))
        self.weight, self.last_sample_ms = ev.kg, now_ms
        w = ev.kg
        if not self.io_known:
            return
        beams_clear = not self.io.ir_entry and not self.io.ir_exit
        if self.state == RECOVERING:
            self._recover(w, now_ms, out)
            return
        if self.state == IDLE:
            if w >= p.min_vehicle_kg:
                self._begin(now_ms)
                self.state = ENTERING
                self.zero_alarm = False
            else:
                s = self.stab.add(now_ms, w, ev.motion)
                if s is not None and not self.stab.at_zero(s.weight_kg) and not self.zero_alarm:
                    self.zero_alarm = True
                    self._alarm("zero_drift", out, {"weight_kg": s.weight_kg})
                elif s is not None and self.stab.at_zero(s.weight_kg):
                    self.zero_alarm = False
                return
        t = self.txn
        if t is None:
            return
        if beams_clear and w >= p.min_vehicle_kg:
            t.clear_weight = w
        if self.state in (ENTERING, ON_PLATFORM):
            if w < p.min_vehicle_kg and beams_clear and self.stab.at_zero(w):
                self._abandon(now_ms, out)
                return
            if not beams_clear:
                if self.state == ON_PLATFORM and t.stable_kg is None:
                    self.state = ENTERING
                    self.stab.reset()
                    t.platform_kg.clear()
                s = self.stab.add(now_ms, w, ev.motion)
                if s is not None and w >= p.min_vehicle_kg:
                    self._blocked_but_stable(t, s.weight_kg, now_ms, out)
                return
            t.blocked_since_ms = None
            if self.state == ENTERING:
                self.state = ON_PLATFORM
                t.on_platform_ms = now_ms
                t.beams_clear_once = True
                self.stab.reset()
            if t.stable_kg is not None and abs(w - t.stable_kg) > p.jump_kg:
                # A standing truck cannot change weight like this: jammer or tampering.
                self._hold_late("weight_jump", {"weight_kg": w, "stable_kg": t.stable_kg},
                                now_ms, out)
                return
            if len(t.platform_kg) < 3000:
                t.platform_kg.append((now_ms, w))
            s = self.stab.add(now_ms, w, ev.motion)
            if s is None:
                return
            if t.stable_kg is None:
                t.stable_kg, t.stable_ms = s.weight_kg, now_ms
                before = sorted(kg for ms, kg in t.platform_kg if ms < s.since_ms)
                level = before[len(before) // 2] if before else s.weight_kg
                if abs(s.weight_kg - level) > p.jump_kg:
                    # The truck settled somewhere else than where it stood since it came on:
                    # the indicated weight was shifted mid-settling (jammer / tampering).
                    self._hold_late("weight_jump", {"weight_kg": s.weight_kg,
                                                    "platform_median_kg": level}, now_ms, out)
                    return
            elif abs(s.weight_kg - t.stable_kg) > p.e_kg * 2:
                t.stable_kg, t.stable_ms = s.weight_kg, now_ms
            if now_ms - (t.stable_ms or now_ms) >= p.confirm_ms:
                self.state = IDENTIFY
                t.identify_ms = now_ms
                self._try_decide(now_ms, out)
            return
        if self.state in (IDENTIFY, HELD, RELEASED):
            self._watch_standing(t, w, now_ms, out)
            return
        if self.state == LEAVING:
            if self.stab.at_zero(w) and not self.io.loop_exit and not self.io.ir_exit:
                self._barrier(False, "decision", out)
                self._finish()

    def _blocked_but_stable(self, t: Txn, kg: int, now_ms: int, out: list[Action]) -> None:
        p = self.policy
        own = t.plate
        own_ms = max((ts for r, ts in t.plate_times if own and r.plate == own.plate), default=None)
        # A different plate read at the entry after ours: someone is right behind us.
        queued = own is not None and own_ms is not None and any(
            r.plate != own.plate and ts >= own_ms for r, ts in self.last_plates
        )
        regained = t.beams_clear_once and kg - t.clear_weight > p.second_vehicle_kg
        if self.io.ir_entry and (regained or queued):
            if "second_vehicle" not in t.flags:
                t.flags.append("second_vehicle")
            self._alarm("second_vehicle", out, {"weight_kg": kg, "before_kg": t.clear_weight})
            # No weighing of two trucks at once: hold until one backs off or the operator acts.
            self.state = HELD
            return
        if t.blocked_since_ms is None:
            t.blocked_since_ms = now_ms
        elif now_ms - t.blocked_since_ms >= p.beam_grace_ms:
            beams = [b for b, on in (("entry", self.io.ir_entry), ("exit", self.io.ir_exit)) if on]
            self._alarm("not_fully_on_platform", out, {"weight_kg": kg, "beams_blocked": beams})
            if "not_fully_on_platform" not in t.flags:
                t.flags.append("not_fully_on_platform")
            self.state = HELD  # no weighing; the truck must pull fully on, or the operator acts

    def _watch_standing(self, t: Txn, w: int, now_ms: int, out: list[Action]) -> None:
        """After a stable reading the truck stands still: any large change is suspicious."""
        p = self.policy
        beams_clear = not self.io.ir_entry and not self.io.ir_exit
        if self.state == HELD and self.stab.at_zero(w) and not self.io.ir_entry:
            self._abandon(now_ms, out)
            return
        if t.stable_kg is None:
            if self.state == HELD and t.weighing is None and beams_clear and set(t.flags) <= {
                "not_fully_on_platform"
            }:
                self.state = ON_PLATFORM  # pulled fully on after all: weigh it now
                t.on_platform_ms = now_ms
                t.beams_clear_once = True
                self.stab.reset()
            return
        leaving = self.state == RELEASED and (self.io.ir_exit or self.io.loop_exit)
        if leaving or (self.state == RELEASED and t.overridden):
            return
        if self.io.ir_entry and w - t.stable_kg > p.second_vehicle_kg:
            self._hold_late("second_vehicle", {"weight_kg": w, "stable_kg": t.stable_kg}, now_ms,
                            out)
            return
        if abs(w - t.stable_kg) > p.jump_kg and not self.io.ir_entry:
            if self.state == HELD and self.stab.at_zero(w):
                return  # the held truck backed off; handled by the platform-empty check
            self._hold_late("weight_jump", {"weight_kg": w, "stable_kg": t.stable_kg}, now_ms, out)

    def _hold_late(
        self, code: str, detail: dict[str, Any], now_ms: int, out: list[Action]
    ) -> None:
        t = self.txn
        assert t is not None
        if code not in t.flags:
            t.flags.append(code)
        self._alarm(code, out, detail)
        if self.state == RELEASED and not t.passages:
            # Fail closed: the release was for the weight we saw, not this one.
            t.released = False
            self._barrier(False, "decision", out)
        if self.state in (ON_PLATFORM, IDENTIFY, RELEASED):
            if t.weighing is None:
                self._decide_now(now_ms, out, force=True)
            self.state = HELD

    def _abandon(self, now_ms: int, out: list[Action]) -> None:
        """The platform is empty again before a decision. Out through the exit (the exit loop
        held by a vehicle right ahead, so no new loop edge) is an escape; backing off is not."""
        t = self.txn
        if t is not None and t.exit_seen and not t.passages and self.io.loop_exit:
            self._passage(now_ms, out, how="exit_beam")
        self._finish()

    # ----------------------------------------------------------------- identify + decide
    def _pass_kind(
        self, plate: str, now_ms: int, weight_kg: int | None
    ) -> tuple[str, TareRecord | None]:
        """Which pass this is: pair with an open tare (two-pass), use a stored or registered
        tare (one-pass), or measure the tare. A truck barely heavier than its known tare is
        empty: it is re-tared (so water in the tank meets the tare band)."""
        p = self.policy
        if p.mode in ("two_pass", "auto"):
            rec = self.book.open_tares.get(plate)
            if rec and now_ms - rec.at_ms <= p.open_tare_expiry_h * 3_600_000:
                return "gross", rec
        if p.mode in ("one_pass", "auto"):
            rec = self.book.stored_tares.get(plate)
            if rec is None or now_ms - rec.at_ms > p.tare_expiry_h * 3_600_000:
                registered = self.book.registered_tares.get(plate)
                rec = TareRecord("registered", registered, None, now_ms) if registered else None
            if rec is not None and (weight_kg is None or weight_kg >= rec.kg + p.min_load_kg):
                return "one_pass", rec
        return "tare", None

    def _check_ticket(self, t: Txn, plate: str, now_ms: int, out: list[Action]) -> None:
        if t.qr_text is None or t.ticket_checked_for == plate:
            return
        t.ticket_checked_for = plate
        if self.verifier is None:
            t.ticket = TicketFacts(False, "unknown_issuer", None, None)
        else:
            res = self.verifier.check(t.qr_text, plate=plate, now=self._dt(now_ms))
            tk = res.ticket
            t.ticket = TicketFacts(
                ok=bool(res.ok),
                reason="ok" if res.ok else str(res.reason),
                ticket_id=getattr(tk, "ticket_id", None),
                planned_net_kg=getattr(tk, "planned_net_kg", None),
            )
        out.append(Record("ticket_check", {"txn": t.id, "ticket_id": t.ticket.ticket_id,
                                           "result": t.ticket.reason, "plate": plate}))

    def _try_decide(self, now_ms: int, out: list[Action]) -> None:
        t = self.txn
        if t is None or self.state != IDENTIFY or t.weighing is not None:
            return
        plate = t.plate
        if plate is None:
            return  # wait for a plate (camera or operator); the barrier stays down
        waited = now_ms - (t.identify_ms or now_ms)
        if (self.policy.await_reader and not t.reader_done and t.manual_plate is None
                and waited < self.policy.identify_timeout_ms):
            return  # the gate's own read is still coming: compare it before deciding
        kind, _ = self._pass_kind(plate.plate, now_ms, t.stable_kg)
        self._check_ticket(t, plate.plate, now_ms, out)
        waiting_ticket = (
            kind != "tare" and self.policy.ticket_required and t.ticket is None
            and now_ms - (t.identify_ms or now_ms) < self.policy.identify_timeout_ms
        )
        if waiting_ticket:
            return
        self._decide_now(now_ms, out)

    def _decide_now(self, now_ms: int, out: list[Action], force: bool = False) -> None:
        t = self.txn
        assert t is not None
        p = self.policy
        plate = t.plate
        if plate is None or t.stable_kg is None:
            if force:
                self.state = HELD
            return
        kind, tare_rec = self._pass_kind(plate.plate, now_ms, t.stable_kg)
        axles = plate.axles or self.book.axles.get(plate.plate) or p.default_axles
        weighed = Weighed(
            pass_kind=kind,
            weight_kg=t.stable_kg,
            tare_kg=tare_rec.kg if tare_rec else None,
            axles=axles,
            tare_median=self.book.median_tare(plate.plate),
            ticket=t.ticket,
        )
        reasons = decide(p, weighed)
        for f in t.flags:
            if f not in reasons:
                reasons.append(f)
        fronts = {r.plate for r in t.plates if r.conf_pm >= 800}
        if t.manual_plate is None and len(fronts) > 1 and "plate_mismatch" not in reasons:
            reasons.append("plate_mismatch")
        warn = advisory(p, weighed)
        release = not reasons
        gross = t.stable_kg if kind != "tare" else None
        tare_kg = t.stable_kg if kind == "tare" else (tare_rec.kg if tare_rec else None)
        body: dict[str, Any] = {
            "txn": t.id,
            "pass": kind,
            "plate": plate.plate,
            "plate_conf_pm": plate.conf_pm,
            "plate_source": plate.source,
            "axles": axles,
            "weight_kg": t.stable_kg,
            "gross_kg": gross,
            "tare_kg": tare_kg,
            "net_kg": gross - tare_kg if gross is not None and tare_kg is not None else None,
            "tare_source": "measured" if kind == "tare" else "stored",
            "tare_seq": tare_rec.seq if tare_rec else None,
            "ticket_id": t.ticket.ticket_id if t.ticket else None,
            "limit_kg": p.limit_for(axles),
            "decision": "release" if release else "hold",
            "reasons": reasons,
            "stable_ms": max(0, now_ms - (t.stable_ms or now_ms)) + p.stability_window_ms,
            "snapshot_sha256": plate.snapshot_sha256 or next(
                (r.snapshot_sha256 for r in t.plates if r.snapshot_sha256), None),
        }
        t.weighing = body
        out.append(Record("weighing", body, ref=f"weighing:{t.id}"))
        self.last_decision = {"txn": t.id, "decision": body["decision"], "reasons": reasons,
                              "pass": kind, "weight_kg": t.stable_kg, "net_kg": body["net_kg"]}
        for code in reasons + warn:
            self._alarm(code, out, {"weight_kg": t.stable_kg, "limit_kg": body["limit_kg"]}
                        if code == "overload" else {"weight_kg": t.stable_kg})
        if release:
            self._apply_release_to_book(t, kind, plate.plate, now_ms)
            t.released = True
            self.state = RELEASED
            self._barrier(True, "decision", out)
        else:
            self.state = HELD

    def _apply_release_to_book(self, t: Txn, kind: str, plate: str, now_ms: int) -> None:
        assert t.stable_kg is not None
        if kind == "tare":
            rec = TareRecord(t.id, t.stable_kg, None, now_ms)
            self.book.add_tare(plate, rec, open_for_gross=self.policy.mode != "one_pass")
        else:
            self.book.close_open_tare(plate)

    # ----------------------------------------------------------------- inputs
    def _on_inputs(self, ev: Inputs, now_ms: int, out: list[Action]) -> None:
        old, self.io = self.io, ev
        if not self.io_known:
            self.io_known = True
            old = ev  # the first snapshot is a baseline, not a set of edges
        if "io" in self.offline:
            self.offline.discard("io")
            out.append(Record("device", {"device": "io", "state": "online", "detail": {}}))
        # Barrier moving without a command: forced (冲卡) or tampered.
        if not self.barrier_cmd_up and old.barrier_down and not ev.barrier_down:
            self._alarm("barrier_forced", out, {"feedback": "down_lost"}, txn=self._ref_txn())
        t = self.txn
        if t is not None and old.loop_entry and not ev.loop_entry:
            t.left_entry_loop = True
        if (
            t is not None and ev.loop_entry and not old.loop_entry and t.next_arrival_ms is None
            and (t.left_entry_loop or t.beams_clear_once)
        ):
            # The next vehicle is on the entry loop: from now on the lane camera sees it, not us.
            t.next_arrival_ms = now_ms
        if (
            t is not None and self.state == ENTERING and not ev.ir_entry and not ev.ir_exit
            and self.weight is not None and self.weight >= self.policy.min_vehicle_kg
        ):
            t.beams_clear_once = True
            t.clear_weight = self.weight
        if t is not None and ev.ir_exit and not old.ir_exit:
            if self.state == LEAVING and t.exit_cleared and self._occupied():
                # Our truck is off the platform, yet another vehicle is crossing the exit
                # beam on the same release: a tailgater (跟车). Close the barrier on it.
                self._barrier(False, "decision", out)
                self._finish()
                follower = self._begin(now_ms)
                follower.exit_seen = True
                self.state = ENTERING
                self._alarm("second_vehicle", out, {"following": t.id, "weight_kg": self.weight})
                t = follower
            else:
                t.exit_seen = True
        if t is not None and self.state == LEAVING and old.ir_exit and not ev.ir_exit:
            t.exit_cleared = True
        if ev.loop_exit and not old.loop_exit:
            self._passage(now_ms, out)
        if self.state == RELEASED and (ev.ir_exit or ev.loop_exit):
            self.state = LEAVING
        if self.state == LEAVING and not ev.loop_exit and old.loop_exit:
            if self.weight is not None and self.stab.at_zero(self.weight) and not ev.ir_exit:
                self._barrier(False, "decision", out)
                self._finish()
            elif (t is not None and t.passages and not ev.ir_exit and self.weight is not None
                  and self.weight >= self.policy.min_vehicle_kg):
                # Our truck is through; the weight left on the platform is the next truck.
                self._barrier(False, "decision", out)
                self._finish()
                self._begin(now_ms)
                self.state = ENTERING
        if self.state == IDLE and (ev.ir_entry or ev.ir_exit) and not (old.ir_entry or old.ir_exit):
            pass  # a beam alone does not start a transaction; weight does

    def _ref_txn(self) -> Txn | None:
        return self.txn or self.last_txn

    def _occupied(self) -> bool:
        return self.weight is not None and self.weight >= self.policy.min_vehicle_kg

    def _passage(self, now_ms: int, out: list[Action], how: str = "exit_loop") -> None:
        r = self.recovered
        if self.state == RECOVERING and r is not None and r.weighing is not None:
            if r.weighing.get("decision") == "release":
                # The truck released before the power cut is driving out now: not an escape.
                out.append(Record("passage", {"txn": r.txn, "direction": "exit",
                                              "released": True}))
                out.append(Record("recovery", {"txn": r.txn, "resolution": "closed",
                                               "weighing_seq": r.weighing_seq,
                                               "detail": {"passage": "after restart"}}))
                self.recovered = None
                self.state = LEAVING
                self.txn = Txn(r.txn, now_ms, released=True, passages=1)
                self.barrier_cmd_up = r.barrier_up
                return
        t = self.txn
        if t is not None and t.passages and how != "exit_loop":
            return  # already counted by the loop
        released = bool(t and t.released and t.passages == 0)
        if t is not None:
            t.passages += 1
        out.append(Record("passage", {"txn": t.id if t else None, "direction": "exit",
                                      "released": released}))
        if not released:
            detail: dict[str, Any] = {"state": self.state, "barrier_cmd_up": self.barrier_cmd_up,
                                      "seen_by": how}
            if t is not None:
                detail["weighed"] = t.weighing is not None
            self._alarm("escape", out, detail, txn=t)
            if not self.barrier_cmd_up and self.io.barrier_down:
                self._alarm("barrier_forced", out, {"feedback": "passage_while_down"}, txn=t)

    # ----------------------------------------------------------------- plate / ticket
    def _on_plate(self, ev: PlateRead, now_ms: int, out: list[Action]) -> None:
        """Attribute a plate read to a truck by state and time, never by arrival order alone.

        The gate's own reader tags its reads with the transaction it took the frames for.
        Pushed ANPR reads are the platform truck's unless the same camera already read another
        plate for it, or the frame was taken after the next vehicle reached the entry loop.
        """
        t = self.txn
        seen = ev.seen_ms if ev.seen_ms is not None else now_ms
        if ev.txn is not None:
            if t is None or t.id != ev.txn or t.weighing is not None:
                return  # that truck is decided or gone: a late read changes nothing
            t.reader_done = True
            if t.next_arrival_ms is not None and seen >= t.next_arrival_ms:
                self._try_decide(now_ms, out)
                return  # the frame may show the next truck on the entry loop
            self._add_plate(t, ev, now_ms, out)
            return
        if t is None or self.state in (RELEASED, LEAVING):
            own = t.plate if t is not None else None
            if own is None or own.plate != ev.plate:  # a repeat of the leaving truck's plate
                self._queue_plate(ev, now_ms)  # is not the next truck's
            return
        same_camera = [r for r in t.plates if r.camera == ev.camera]
        if same_camera and all(r.plate != ev.plate for r in same_camera):
            # This camera already read a different plate for the truck on the platform:
            # the reading belongs to the next truck in the queue.
            self._queue_plate(ev, now_ms)
            return
        if not same_camera and t.next_arrival_ms is not None and seen >= t.next_arrival_ms:
            if ev.seen_ms is not None:
                self._queue_plate(ev, now_ms)  # taken after the next truck arrived: its plate
                return
            # No capture time, our truck has no plate from this camera yet and another vehicle
            # waits on the entry loop: this may be our late read or the next truck's. Never
            # guess: it becomes a candidate below the threshold for the operator to confirm.
            ev = replace(ev, conf_pm=min(ev.conf_pm, t.min_conf_pm - 1))
        self._add_plate(t, ev, now_ms, out)

    def _add_plate(self, t: Txn, ev: PlateRead, now_ms: int, out: list[Action]) -> None:
        was_waiting = t.waiting_for_plate
        t.plates.append(ev)
        t.plate_times.append((ev, now_ms))
        if self.state == HELD and was_waiting and t.plate is not None:
            self.state = IDENTIFY  # held only for want of a plate: decide now
        self._try_decide(now_ms, out)

    def _queue_plate(self, ev: PlateRead, now_ms: int) -> None:
        self.last_plates = [(p, ts) for p, ts in self.last_plates
                            if now_ms - ts <= PENDING_TICKET_MS][-9:] + [(ev, now_ms)]

    def _on_ticket(self, ev: TicketScan, now_ms: int, out: list[Action]) -> None:
        t = self.txn
        if t is None or self.state in (RELEASED, LEAVING):
            self.pending_qr = (ev.qr_text, now_ms)
            return
        if t.weighing is not None:
            return  # decided already; a new QR does not reopen the decision
        t.qr_text = ev.qr_text
        t.ticket = None
        t.ticket_checked_for = None
        self._try_decide(now_ms, out)

    # ----------------------------------------------------------------- devices + time
    def _on_device(self, ev: DeviceStatus, now_ms: int, out: list[Action]) -> None:
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
            self._alarm_device(ev.device, ev.detail, out)

    def _alarm_device(self, device: str, detail: dict[str, Any], out: list[Action]) -> None:
        out.append(Record("alarm", {"code": "device_offline", "severity": "warning",
                                    "txn": self.txn.id if self.txn else None,
                                    "detail": {"device": device, **detail}}))

    def _on_time(self, now_ms: int, out: list[Action]) -> None:
        p = self.policy
        if (
            self.last_sample_ms is not None
            and now_ms - self.last_sample_ms > p.device_timeout_ms
            and "scale" not in self.offline
        ):
            self.offline.add("scale")
            detail = {"silent_ms": now_ms - self.last_sample_ms}
            out.append(Record("device", {"device": "scale", "state": "offline", "detail": detail}))
            self._alarm_device("scale", detail, out)
        t = self.txn
        if t is None:
            return
        if self.state == ON_PLATFORM and t.on_platform_ms is not None and t.stable_kg is None:
            if now_ms - t.on_platform_ms > p.unstable_timeout_ms:
                if "unstable" not in t.flags:
                    t.flags.append("unstable")
                self._alarm("unstable", out, {"weight_kg": self.weight,
                                              "on_platform_ms": now_ms - t.on_platform_ms})
        if self.state == IDENTIFY and t.weighing is None:
            waited = now_ms - (t.identify_ms or now_ms)
            if waited < p.identify_timeout_ms:
                self._try_decide(now_ms, out)
            elif t.plate is not None:
                self._decide_now(now_ms, out)
            else:
                self._hold_unread(t, waited, out)
        if self.state == RELEASED and self.barrier_cmd_up and t.released and not t.passages:
            if now_ms - (t.started_ms) > p.release_timeout_ms + p.identify_timeout_ms * 4:
                self._barrier(False, "timeout", out)

    def _hold_unread(self, t: Txn, waited_ms: int, out: list[Action]) -> None:
        """Fail closed: no credible plate in time. Hold, raise an alarm, ask the operator."""
        cand = t.candidate
        self._alarm("plate_unread", out, {
            "weight_kg": t.stable_kg, "waited_ms": waited_ms,
            "candidate": cand.plate if cand else None,
            "candidate_conf_pm": cand.conf_pm if cand else None,
            "min_conf_pm": t.min_conf_pm,
        })
        self.state = HELD
        self.last_decision = {"txn": t.id, "decision": "hold", "reasons": ["plate_unread"],
                              "pass": None, "weight_kg": t.stable_kg, "net_kg": None}

    # ----------------------------------------------------------------- operator
    def _on_operator(self, ev: Operator, now_ms: int, out: list[Action]) -> None:
        if not ev.reason.strip() or not ev.operator.strip():
            raise OperatorRefused("an override needs the operator's name and a typed reason")
        t = self.txn
        if ev.action == "manual_plate":
            if t is None or not ev.plate:
                raise OperatorRefused("manual plate needs a truck on the platform and a plate")
            if t.weighing is not None:
                raise OperatorRefused("this truck is already weighed; void it to re-weigh")
            from edge_agent.plates.grammar import normalise_plate

            plate = normalise_plate(ev.plate)
            if plate is None:
                raise OperatorRefused(
                    f"{ev.plate!r} is not a valid plate: type the province character, the "
                    f"office letter and 5 letters or digits (6 on new-energy plates), no I or O, "
                    f"e.g. 陕K12345 or 晋B1234挂"
                )
            cand = t.candidate
            was_waiting = t.waiting_for_plate
            out.append(Record("override", {"txn": t.id, "action": "manual_plate",
                                           "operator": ev.operator, "reason": ev.reason,
                                           "plate": plate,
                                           "read_plate": cand.plate if cand else None,
                                           "read_conf_pm": cand.conf_pm if cand else None}))
            t.manual_plate = plate
            t.ticket_checked_for = None
            if self.state == HELD and was_waiting:
                self.state = IDENTIFY  # held only for want of a plate: decide now
            self._try_decide(now_ms, out)
            return
        if ev.action == "manual_barrier_up":
            if t is not None and t.weighing and "overload" in t.weighing["reasons"]:
                raise OperatorRefused(
                    "an overloaded truck may not be released; unload it and weigh again"
                )
            out.append(Record("override", {"txn": t.id if t else None,
                                           "action": "manual_barrier_up",
                                           "operator": ev.operator, "reason": ev.reason}))
            if t is not None:
                t.released = True
                t.overridden = True
                t.passages = 0
                self.state = RELEASED
            self._barrier(True, "override", out)
            return
        if ev.action == "void":
            target = ev.txn or (t.id if t else None)
            if target is None:
                raise OperatorRefused("nothing to void: name the transaction")
            out.append(Record("override", {"txn": target, "action": "void",
                                           "operator": ev.operator, "reason": ev.reason}))
            self.book.replay(-1, "override", {"txn": target, "action": "void"}, now_ms)
            if t is not None and t.id == target:
                t.voided = True
                if self.state in (RELEASED,) and not t.passages:
                    self._barrier(False, "override", out)
                if self.state != LEAVING:
                    self.state = HELD
            return
        raise OperatorRefused(f"unknown operator action {ev.action!r}")

    def _on_recorded(self, ev: Recorded, now_ms: int, out: list[Action]) -> None:
        if not ev.ref.startswith("weighing:"):
            return
        txn_id = ev.ref.split(":", 1)[1]
        self.book.set_tare_seq(txn_id, ev.seq)
        for t in (self.txn, self.last_txn):
            if t is not None and t.id == txn_id:
                t.weighing_seq = ev.seq
                if t.released and t.ticket and t.ticket.ok and t.ticket.ticket_id:
                    out.append(MarkTicketUsed(t.ticket.ticket_id, ev.seq))

    # ----------------------------------------------------------------- recovery
    def _recover(self, w: int, now_ms: int, out: list[Action]) -> None:
        r = self.recovered
        assert r is not None
        s = self.stab.add(now_ms, w)
        if self.stab.at_zero(w):
            out.append(Record("recovery", {"txn": r.txn, "resolution": "closed",
                                           "weighing_seq": r.weighing_seq,
                                           "detail": {"platform": "empty"}}))
            if r.barrier_up:
                self._barrier(False, "timeout", out, txn=Txn(r.txn, now_ms))
            self.recovered = None
            self.state = IDLE
            self.stab.reset()
            return
        if s is None:
            return
        t = Txn(id=r.txn, started_ms=now_ms, beams_clear_once=True, stable_kg=s.weight_kg,
                stable_ms=now_ms, weighing=r.weighing, weighing_seq=r.weighing_seq,
                min_conf_pm=self.policy.plate_min_conf_pm)
        self.txn = t
        self.recovered = None
        out.append(Record("recovery", {"txn": r.txn, "resolution": "resumed",
                                       "weighing_seq": r.weighing_seq,
                                       "detail": {"weight_kg": s.weight_kg}}))
        if r.weighing is None:
            t.stable_kg = None
            t.on_platform_ms = now_ms
            self.state = ON_PLATFORM
            return
        recorded = int(r.weighing["weight_kg"])
        if abs(recorded - s.weight_kg) > self.policy.jump_kg:
            t.flags.append("weight_jump")
            self._alarm("weight_jump", out, {"weight_kg": s.weight_kg, "recorded_kg": recorded})
            self.state = HELD
            return
        t.stable_kg = recorded
        if r.weighing.get("decision") == "release":
            t.released = True
            self.state = RELEASED
            if not r.barrier_up:
                self._barrier(True, "decision", out)
            else:
                self.barrier_cmd_up = True
        else:
            self.state = HELD

