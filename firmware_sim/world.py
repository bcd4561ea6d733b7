"""The site: trucks, the exit barrier, loops and IR beams, around the scale. Pure.

``Site.advance(t, outputs)`` moves everything to simulated time ``t`` in small sub-steps and
returns what happened (events and ground truth). Geometry, along the lane in metres: platform
[0, L], entry loop [-4, -1], exit barrier at L + 1, exit loop [L + 2, L + 5].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_sim.physics import ScaleModel
from firmware_sim.protocols.modbus_maps import GateInputs
from firmware_sim.scenario import (
    ForceBarrier,
    Jammer,
    NoWeighing,
    OneAxleOff,
    PlateSwap,
    Scenario,
    Tailgate,
    Truck,
    WaterTank,
)

__all__ = ["Site", "GateOutputs", "Visit", "Event", "TruckShape", "truck_shape", "SUBSTEP_S"]

SUBSTEP_S = 0.05
ENTRY_LOOP = (-4.0, -1.0)
QUEUE_FRONT_X = -1.5
DRIVE_ON_MPS = 1.5
DRIVE_OFF_MPS = 2.0
GONE_BEYOND_M = 8.0  # rear this far past the platform: out of sight of every sensor
_BARRIER_GAP_M = 0.5  # a truck stops this far short of the barrier arm
_OFF_AXLE_M = 0.8  # "one axle off": the last axle stands this far before the entry edge

# Axle positions behind the front bumper (m), body length (m), share of the weight per axle.
_SHAPES: dict[int, tuple[tuple[float, ...], float, tuple[float, ...]]] = {
    2: ((1.2, 5.2), 7.0, (0.35, 0.65)),
    3: ((1.3, 4.8, 6.15), 8.0, (0.26, 0.37, 0.37)),
    4: ((1.3, 3.2, 7.9, 9.25), 10.5, (0.2, 0.2, 0.3, 0.3)),
    5: ((1.3, 4.9, 10.0, 11.3, 12.6), 14.0, (0.13, 0.22, 0.22, 0.22, 0.21)),
    6: ((1.3, 4.7, 6.05, 11.6, 12.9, 14.2), 15.5, (0.11, 0.17, 0.17, 0.183, 0.183, 0.184)),
}


@dataclass(frozen=True)
class TruckShape:
    axle_offsets_m: tuple[float, ...]
    length_m: float
    axle_loads_kg: tuple[int, ...]


def truck_shape(axles: int, weight_kg: int) -> TruckShape:
    """Axle positions and loads; the loads add up to exactly ``weight_kg``."""
    offsets, length, shares = _SHAPES[axles]
    loads = [int(weight_kg * s) for s in shares[:-1]]
    loads.append(weight_kg - sum(loads))
    return TruckShape(offsets, length, tuple(loads))


@dataclass(frozen=True)
class GateOutputs:
    """The coils, as the gate IO board holds them."""

    barrier_up: bool = False
    barrier_down: bool = False
    light_red: bool = False
    light_green: bool = False
    horn: bool = False


@dataclass(frozen=True)
class Event:
    t: float
    record: str  # "event" or "truth"
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "record": self.record, **self.data}


@dataclass
class Visit:
    """One pass of one truck over the scale (a two-pass truck makes two visits)."""

    truck: Truck
    pass_kind: str  # "tare" or "gross"
    arrive_t: float
    weight_kg: int
    water_kg: int
    shown_plate: str
    shape: TruckShape
    state: str = "scheduled"  # scheduled, queued, driving_on, standing, backing_off,
    #                          driving_off, gone
    front_x: float = QUEUE_FRONT_X
    target_x: float = 0.0
    stopped_t: float | None = None
    blocked_since: float | None = None
    on_platform_logged: bool = False
    jammer_on: bool = False
    forced: bool = False
    following: Visit | None = None
    gave_up: bool = False  # a tailgater that backed off, a truck half off that pulled on
    cheat_names: list[str] = field(default_factory=list)

    def cheat(self, kind: type) -> Any:
        for c in self.truck.cheats_for(self.pass_kind):
            if isinstance(c, kind):
                return c
        return None

    @property
    def rear_x(self) -> float:
        return self.front_x - self.shape.length_m

    def axle_positions(self) -> list[float]:
        return [self.front_x - off for off in self.shape.axle_offsets_m]


class Barrier:
    """The exit barrier arm: 0 = down, 1 = up; moves at 1/travel_s per second."""

    def __init__(self, travel_s: float) -> None:
        self.travel_s = travel_s
        self.position = 0.0
        self.target = 0.0

    def command(self, up: bool) -> None:
        self.target = 1.0 if up else 0.0

    def step(self, dt: float) -> None:
        move = dt / self.travel_s
        if self.position < self.target:
            self.position = min(self.target, self.position + move)
        elif self.position > self.target:
            self.position = max(self.target, self.position - move)

    @property
    def is_up(self) -> bool:
        return self.position >= 1.0

    @property
    def is_down(self) -> bool:
        return self.position <= 0.0


class Site:
    """Everything the sensors see. Drive it with ``advance``; read ``inputs`` and ``scale``."""

    def __init__(self, scenario: Scenario, *, t0: float = 0.0) -> None:
        self.scenario = scenario
        self.length_m = scenario.scale.platform_length_m
        self.scale = ScaleModel(scenario.scale.spec(), seed=scenario.scenario.seed, t0=t0)
        self.barrier = Barrier(scenario.gate.barrier_travel_s)
        self.t = t0
        self.outputs = GateOutputs()
        self.visits: list[Visit] = []
        for truck in scenario.truck:
            first_pass = "tare" if truck.passes == "two" else "gross"
            self.visits.append(self._make_visit(truck, first_pass, t0 + truck.arrive_s))
        self.visits.sort(key=lambda v: v.arrive_t)
        self._last_activity_t = t0
        self.scale.sample(t0)

    # ---- construction ----------------------------------------------------------------------
    def _make_visit(self, truck: Truck, pass_kind: str, arrive_t: float) -> Visit:
        water = 0
        shown = truck.plate
        names: list[str] = [c.kind for c in truck.cheats_for(pass_kind)]
        weight = truck.tare_kg if pass_kind == "tare" else truck.tare_kg + truck.load_kg
        for c in truck.cheats_for(pass_kind):
            if isinstance(c, WaterTank):
                water = c.water_kg
            if isinstance(c, PlateSwap):
                shown = c.shown_plate
        weight += water
        return Visit(
            truck=truck,
            pass_kind=pass_kind,
            arrive_t=arrive_t,
            weight_kg=weight,
            water_kg=water,
            shown_plate=shown,
            shape=truck_shape(truck.axles, weight),
            cheat_names=names,
        )

    # ---- queries ---------------------------------------------------------------------------
    def present(self) -> list[Visit]:
        """Visits in sight of the sensors (queued at the loop or further along)."""
        return [v for v in self.visits if v.state not in ("scheduled", "gone")]

    def platform_load_kg(self) -> int:
        total = 0
        for v in self.present():
            if v.state == "queued" and v is not self._head():
                continue
            for x, load in zip(v.axle_positions(), v.shape.axle_loads_kg, strict=True):
                if 0.0 <= x <= self.length_m:
                    total += load
        return total

    def indicator_offset_kg(self) -> int:
        return sum(v.cheat(Jammer).delta_kg for v in self.visits if v.jammer_on)

    def _queue(self) -> list[Visit]:
        """Trucks waiting at the entry, first come first served."""
        return sorted((v for v in self.visits if v.state == "queued"), key=lambda v: v.arrive_t)

    def _head(self) -> Visit | None:
        queue = self._queue()
        return queue[0] if queue else None

    def _visible(self) -> list[Visit]:
        head = self._head()
        return [v for v in self.present() if v.state != "queued" or v is head]

    def inputs(self) -> GateInputs:
        L = self.length_m
        trucks = self._visible()

        def spans(x: float) -> bool:
            return any(v.rear_x < x < v.front_x for v in trucks)

        def overlaps(lo: float, hi: float) -> bool:
            return any(v.rear_x < hi and v.front_x > lo for v in trucks)

        return GateInputs(
            ir_entry=spans(0.0),
            ir_exit=spans(L),
            loop_entry=overlaps(*ENTRY_LOOP),
            loop_exit=overlaps(L + 2.0, L + 5.0),
            barrier_up_fb=self.barrier.is_up,
            barrier_down_fb=self.barrier.is_down,
        )

    def camera_plate(self) -> str | None:
        """The plate in front of the lane camera: the truck nearest the entry, if any."""
        trucks = [v for v in self._visible() if v.rear_x < self.length_m]
        if not trucks:
            return None
        return min(trucks, key=lambda v: v.front_x).shown_plate

    def repeat_traffic(self) -> int:
        """Send every scenario truck again, arriving ``arrive_s`` after now (continuous runs).

        Finished visits are dropped first so a long run does not grow without bound.
        Returns how many visits were scheduled.
        """
        self.visits = [v for v in self.visits if v.state != "gone"]
        for truck in self.scenario.truck:
            first_pass = "tare" if truck.passes == "two" else "gross"
            self.visits.append(self._make_visit(truck, first_pass, self.t + truck.arrive_s))
        self.visits.sort(key=lambda v: v.arrive_t)
        return len(self.scenario.truck)

    @property
    def finished(self) -> bool:
        return all(v.state == "gone" for v in self.visits)

    @property
    def last_activity_t(self) -> float:
        return self._last_activity_t

    # ---- commands from the gate IO board -------------------------------------------------
    def set_outputs(self, outputs: GateOutputs) -> list[Event]:
        """Apply coil states. ``barrier_up``/``barrier_down`` are momentary commands."""
        events: list[Event] = []
        if outputs.barrier_up and not outputs.barrier_down:
            self.barrier.command(True)
        elif outputs.barrier_down and not outputs.barrier_up:
            self.barrier.command(False)
        self.outputs = outputs
        return events

    # ---- time ------------------------------------------------------------------------------
    def advance(self, t: float) -> list[Event]:
        """Move to simulated time ``t`` in sub-steps; sample the scale at each one."""
        events: list[Event] = []
        while self.t < t - 1e-9:
            dt = min(SUBSTEP_S, t - self.t)
            self.t += dt
            events.extend(self._step(dt))
            self.scale.set_load(self.t, self.platform_load_kg())
            self.scale.set_offset(self.indicator_offset_kg())
            self.scale.sample(self.t)
        return events

    def _event(self, name: str, v: Visit | None = None, **extra: Any) -> Event:
        data: dict[str, Any] = {"event": name}
        if v is not None:
            data.update({"plate": v.truck.plate, "pass": v.pass_kind})
        data.update(extra)
        return Event(self.t, "event", data)

    def _truth(self, v: Visit) -> Event:
        truck = v.truck
        return Event(
            self.t,
            "truth",
            {
                "plate": truck.plate,
                "shown_plate": v.shown_plate,
                "pass": v.pass_kind,
                "axles": truck.axles,
                "ticket": truck.ticket,
                "true_on_scale_kg": v.weight_kg,
                "true_tare_kg": truck.tare_kg,
                "true_gross_kg": truck.tare_kg + truck.load_kg,
                "load_kg": truck.load_kg,
                "water_kg": v.water_kg,
                "cheats": v.cheat_names,
                "weighed": v.stopped_t is not None,
                "forced_barrier": v.forced,
                "arrived_t": round(v.arrive_t, 3),
                "stopped_t": None if v.stopped_t is None else round(v.stopped_t, 3),
                "left_t": round(self.t, 3),
            },
        )

    def _step(self, dt: float) -> list[Event]:
        events: list[Event] = []
        was_up, was_down = self.barrier.is_up, self.barrier.is_down
        self.barrier.step(dt)
        if self.barrier.is_up and not was_up:
            events.append(self._event("barrier", state="up"))
        if self.barrier.is_down and not was_down:
            events.append(self._event("barrier", state="down"))
        for v in self.visits:
            if v.state == "scheduled" and self.t >= v.arrive_t:
                v.state = "queued"
                v.front_x = QUEUE_FRONT_X
                events.append(self._event("arrived", v, shown_plate=v.shown_plate))
        head = self._head()
        if head is not None:
            events.extend(self._maybe_drive_on(head))
        for v in self.visits:
            if v.state == "driving_on":
                events.extend(self._drive_on(v, dt))
            elif v.state == "standing":
                events.extend(self._stand(v))
            elif v.state == "driving_off":
                events.extend(self._drive_off(v, dt))
            elif v.state == "backing_off":
                events.extend(self._back_off(v, dt))
        if self.present():
            self._last_activity_t = self.t
        return events

    def _stop_position(self, v: Visit, leader: Visit | None) -> float:
        L = self.length_m
        if leader is not None:
            return leader.rear_x - v.cheat(Tailgate).gap_m
        if v.cheat(OneAxleOff) and not v.gave_up:
            return v.shape.axle_offsets_m[-1] - _OFF_AXLE_M
        behind_me = [w for w in self._queue() if w is not v]
        tailgated = any(_tailgating(w) for w in behind_me[:1])
        if tailgated:
            return L + 1.0 - _BARRIER_GAP_M  # pulled right up to the arm, leaving room behind
        return (L + v.shape.length_m) / 2

    def _maybe_drive_on(self, v: Visit) -> list[Event]:
        others = [w for w in self.present() if w is not v and w.state != "queued"]
        if self.outputs.light_red and not _tailgating(v):
            return []
        if _tailgating(v) and others:
            leader = max(others, key=lambda w: w.front_x)
            if leader.state != "standing" or leader.stopped_t is None:
                return []
            v.following = leader
        elif any(w.rear_x < self.length_m for w in others):
            return []  # the platform is not clear yet
        v.state = "driving_on"
        if v.cheat(NoWeighing):
            v.state = "driving_off"
            return [self._event("on_platform", v, stopping=False)]
        v.target_x = self._stop_position(v, v.following)
        return []

    def _drive_on(self, v: Visit, dt: float) -> list[Event]:
        events: list[Event] = []
        v.front_x = min(v.target_x, v.front_x + DRIVE_ON_MPS * dt)
        if not v.on_platform_logged and v.front_x - v.shape.axle_offsets_m[0] >= 0:
            v.on_platform_logged = True
            events.append(self._event("on_platform", v))
        if v.front_x >= v.target_x:
            v.state = "standing"
            v.stopped_t = self.t
            events.append(self._event("stopped", v, front_x=round(v.front_x, 2)))
        return events

    def _stand(self, v: Visit) -> list[Event]:
        events: list[Event] = []
        assert v.stopped_t is not None
        jammer = v.cheat(Jammer)
        if jammer and not v.jammer_on and self.t >= v.stopped_t + jammer.after_s:
            v.jammer_on = True
            events.append(self._event("jammer", v, delta_kg=jammer.delta_kg))
        if v.following is not None:
            if v.following.state in ("driving_off", "gone"):
                v.state = "driving_off"
            elif self.t >= v.stopped_t + v.cheat(Tailgate).give_up_s:
                leader = v.following
                v.state, v.following, v.gave_up = "backing_off", None, True
                events.append(self._event("backing_off", v))
                # The truck ahead had pulled up to the arm to make room; it pulls back to the
                # middle of the platform, clear of the exit beam, to be weighed alone.
                leader.target_x = (self.length_m + leader.shape.length_m) / 2
                leader.state = "backing_off"
            return events
        if self.t < v.stopped_t + v.truck.dwell_s:
            return events
        if self.barrier.is_up:
            v.state = "driving_off"
            return events
        return events + self._blocked(v)

    def _blocked(self, v: Visit) -> list[Event]:
        """Waiting at the closed barrier; a forcing truck goes after its patience runs out."""
        if v.blocked_since is None:
            v.blocked_since = self.t
        off = v.cheat(OneAxleOff)
        if off and not v.gave_up and self.t >= v.blocked_since + off.give_up_s:
            v.gave_up, v.blocked_since = True, None
            v.target_x = self._stop_position(v, None)
            v.state = "driving_on"
            return [self._event("pulling_on", v)]
        force = v.cheat(ForceBarrier)
        if force and self.t >= v.blocked_since + force.after_s:
            v.forced = True
            v.state = "driving_off"
            return [self._event("forced_barrier", v, barrier_position=self.barrier.position)]
        return []

    def _back_off(self, v: Visit, dt: float) -> list[Event]:
        """Reverse: a truck still to be weighed to its stop position, a tailgater that gave up
        off the platform to the entry, where it queues again behind nobody."""
        if not v.gave_up:
            v.front_x = max(v.target_x, v.front_x - DRIVE_ON_MPS * dt)
            if v.front_x > v.target_x:
                return []
            v.state, v.stopped_t = "standing", self.t
            return [self._event("stopped", v, front_x=round(v.front_x, 2))]
        v.front_x = max(QUEUE_FRONT_X, v.front_x - DRIVE_ON_MPS * dt)
        if v.front_x > QUEUE_FRONT_X:
            return []
        v.state, v.stopped_t, v.blocked_since, v.on_platform_logged = "queued", None, None, False
        return [self._event("backed_off", v)]

    def _drive_off(self, v: Visit, dt: float) -> list[Event]:
        events: list[Event] = []
        if v.jammer_on:
            v.jammer_on = False
        stop_at = self.length_m + 1.0 - _BARRIER_GAP_M
        new_x = v.front_x + DRIVE_OFF_MPS * dt
        if not v.forced and not self.barrier.is_up and v.front_x <= stop_at < new_x:
            v.front_x = stop_at
            return events + self._blocked(v)
        if (
            not v.forced
            and not self.barrier.is_up
            and v.front_x >= stop_at
            and (v.front_x < self.length_m + 1.0)
        ):
            return events + self._blocked(v)  # stuck under the arm's line: wait
        v.blocked_since = None
        v.front_x = new_x
        if not v.on_platform_logged and v.front_x - v.shape.axle_offsets_m[0] >= 0:
            v.on_platform_logged = True
        if v.rear_x > self.length_m + GONE_BEYOND_M:
            v.state = "gone"
            events.append(self._event("left", v))
            events.append(self._truth(v))
            if v.truck.passes == "two" and v.pass_kind == "tare":
                nxt = self._make_visit(v.truck, "gross", self.t + v.truck.return_after_s)
                self.visits.append(nxt)
        return events


def _tailgating(v: Visit) -> bool:
    return v.cheat(Tailgate) is not None and not v.gave_up
