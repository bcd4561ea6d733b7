"""A small driver for the pure gate controller: a simulated clock, a fake ledger that answers
``Record(ref=...)`` with ``Recorded``, and a plain fake ticket verifier (no mock library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.gate import (
    Action,
    Barrier,
    Event,
    GateController,
    GatePolicy,
    Inputs,
    PlateRead,
    Record,
    Recorded,
    Tick,
    WeightSample,
)

T0 = 1_795_000_000_000  # 2026-11-19, ms since the epoch


@dataclass
class FakeTicket:
    ticket_id: str
    plate: str
    site: str
    planned_net_kg: int


@dataclass
class FakeCheck:
    ok: bool
    reason: str
    ticket: FakeTicket | None
    message: str = ""


@dataclass
class FakeVerifier:
    """Tickets are 'CT1:<id>:<plate>:<site>:<planned>'; anything else is malformed."""

    used: dict[str, int] = field(default_factory=dict)

    def check(self, qr_text: str, *, plate: str, now: datetime) -> FakeCheck:
        parts = qr_text.split(":")
        if len(parts) != 5 or parts[0] != "CT1":
            return FakeCheck(False, "malformed", None)
        t = FakeTicket(parts[1], parts[2], parts[3], int(parts[4]))
        if t.site != "S1":
            return FakeCheck(False, "wrong_site", t)
        if t.plate != plate:
            return FakeCheck(False, "wrong_plate", t)
        if t.ticket_id in self.used:
            return FakeCheck(False, "used", t)
        return FakeCheck(True, "ok", t)

    def mark_used(self, ticket_id: str, *, seq: int, now: datetime) -> None:
        self.used[ticket_id] = seq


class Gate:
    def __init__(self, ctrl: GateController | None = None, *, start_ms: int = T0,
                 **policy: Any) -> None:
        policy.setdefault("site_id", "S1")
        self.ctrl = ctrl or GateController(GatePolicy(**policy), verifier=FakeVerifier())
        self.now = start_ms  # the sim clock (ms since the epoch); tests may start it anywhere
        self.actions: list[Action] = []
        self.entries: list[tuple[int, str, dict[str, Any]]] = []
        self.io = Inputs()
        self.barrier_up = False
        self._apply(self.ctrl.start(self.now))
        self._apply(self.ctrl.handle(self.io, self.now))  # the IO board's first snapshot

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            self.actions.append(a)
            if isinstance(a, Record):
                seq = len(self.entries)
                self.entries.append((seq, a.kind, a.body))
                if a.ref:
                    self._apply(self.ctrl.handle(Recorded(a.ref, seq), self.now))
            elif isinstance(a, Barrier):
                self.barrier_up = a.up
            elif type(a).__name__ == "MarkTicketUsed":
                v = self.ctrl.verifier
                assert v is not None
                when = datetime.fromtimestamp(self.now / 1000)
                v.mark_used(a.ticket_id, seq=a.seq, now=when)  # type: ignore[union-attr]

    def send(self, ev: Event) -> None:
        self._apply(self.ctrl.handle(ev, self.now))

    def set_io(self, **kw: bool) -> None:
        self.io = Inputs(**{**vars(self.io), **kw})
        self.send(self.io)

    def hold(self, kg: int, ms: int, step: int = 100, jitter: tuple[int, ...] = (0,)) -> None:
        """Scale reads ``kg`` (plus a jitter pattern) for ``ms`` milliseconds of sim time."""
        end = self.now + ms
        i = 0
        while self.now < end:
            self.now += step
            self.send(WeightSample(kg + jitter[i % len(jitter)]))
            i += 1

    def ramp(self, a: int, b: int, ms: int, step: int = 100) -> None:
        n = max(1, ms // step)
        for i in range(1, n + 1):
            self.now += step
            self.send(WeightSample(a + (b - a) * i // n))

    def tick(self, ms: int) -> None:
        self.now += ms
        self.send(Tick())

    # One whole visit of an honest truck (the usual order of sensors).
    def drive_on(self, kg: int, plate: str | None, *, axles: int | None = 6,
                 qr: str | None = None) -> None:
        self.set_io(loop_entry=True)
        if plate:
            self.send(PlateRead(plate, 950, "anpr", axles=axles))
        self.set_io(ir_entry=True)
        self.ramp(0, kg // 2, 1000)
        self.set_io(loop_entry=False)
        self.ramp(kg // 2, kg, 1000)
        self.set_io(ir_entry=False)
        if qr:
            from edge_agent.gate import TicketScan

            self.send(TicketScan(qr))

    def drive_off(self, kg: int) -> None:
        self.set_io(ir_exit=True)
        self.ramp(kg, kg // 2, 1000)
        self.set_io(loop_exit=True)
        self.ramp(kg // 2, 0, 1000)
        self.set_io(ir_exit=False)
        self.hold(0, 500)
        self.set_io(loop_exit=False)
        self.hold(0, 500)

    def kinds(self) -> list[str]:
        return [k for _, k, _ in self.entries]

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        return [b for _, k, b in self.entries if k == kind]

    def alarms(self) -> list[str]:
        return [b["code"] for b in self.bodies("alarm")]
