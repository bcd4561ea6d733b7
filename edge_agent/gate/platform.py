"""Weighing intake: the scale's samples against the beams. A truck arrives, pulls fully on,
settles to a stable weight and is sent to identification; after that it must stand still.
Not fully on, a second vehicle, or a jump with no beam event (jammer, tampering) holds it.
"""

from __future__ import annotations

from typing import Any

from edge_agent.gate.decision import decide_now, try_decide
from edge_agent.gate.events import Action, Record, WeightSample
from edge_agent.gate.passage import passage
from edge_agent.gate.policy import GatePolicy
from edge_agent.gate.recovery import recover
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import (
    ENTERING,
    HELD,
    IDENTIFY,
    IDLE,
    LEAVING,
    ON_PLATFORM,
    RECOVERING,
    RELEASED,
    Txn,
)


def on_weight(g: GateState, ev: WeightSample, now_ms: int, out: list[Action]) -> None:
    p = g.policy
    if "scale" in g.offline:
        g.offline.discard("scale")
        out.append(Record("device", {"device": "scale", "state": "online", "detail": {}}))
    g.weight, g.last_sample_ms = ev.kg, now_ms
    w = ev.kg
    if not g.io_known:
        return
    beams_clear = not g.io.ir_entry and not g.io.ir_exit
    if g.state == RECOVERING:
        recover(g, w, now_ms, out)
        return
    if g.state == IDLE:
        if w >= p.min_vehicle_kg:
            if g.lane_open_until_ms is not None:
                # A vehicle on the scale while the lane stands open: close it, so it is
                # weighed like any truck (or recorded as an escape if it drives on out).
                g.command_barrier(False, "open_lane", out)
            g.begin(now_ms)
            g.state = ENTERING
            g.zero_alarm = False
        else:
            s = g.stab.add(now_ms, w, ev.motion)
            if s is not None and not g.stab.at_zero(s.weight_kg) and not g.zero_alarm:
                g.zero_alarm = True
                g.alarm("zero_drift", out, {"weight_kg": s.weight_kg})
            elif s is not None and g.stab.at_zero(s.weight_kg):
                g.zero_alarm = False
            return
    t = g.txn
    if t is None:
        return
    if beams_clear and w >= p.min_vehicle_kg:
        t.clear_weight = w
    if g.state in (ENTERING, ON_PLATFORM):
        if w < p.min_vehicle_kg and beams_clear and g.stab.at_zero(w):
            _abandon(g, now_ms, out)
            return
        if not beams_clear:
            if g.state == ON_PLATFORM and t.stable_kg is None:
                g.state = ENTERING
                g.stab.reset()
                t.platform_kg.clear()
            s = g.stab.add(now_ms, w, ev.motion)
            if s is not None and w >= p.min_vehicle_kg:
                _blocked_but_stable(g, t, s.weight_kg, now_ms, out)
            return
        t.blocked_since_ms = None
        if g.state == ENTERING:
            g.state = ON_PLATFORM
            t.on_platform_ms = now_ms
            t.beams_clear_once = True
            g.stab.reset()
        if t.stable_kg is not None and abs(w - t.stable_kg) > p.jump_kg:
            # A standing truck cannot change weight like this: jammer or tampering.
            _hold_late(g, "weight_jump", {"weight_kg": w, "stable_kg": t.stable_kg}, now_ms, out)
            return
        if len(t.platform_kg) < 3000:
            t.platform_kg.append((now_ms, w))
        s = g.stab.add(now_ms, w, ev.motion)
        if s is None:
            return
        if t.stable_kg is None:
            t.stable_kg, t.stable_ms = s.weight_kg, now_ms
            level = _held_elsewhere(t.platform_kg, s.since_ms, s.weight_kg, p)
            if level is not None:
                # The truck settled somewhere else than where it stood before: the indicated
                # weight was shifted mid-settling (jammer / tampering).
                _hold_late(g, "weight_jump", {"weight_kg": s.weight_kg,
                                              "platform_median_kg": level}, now_ms, out)
                return
        elif abs(s.weight_kg - t.stable_kg) > p.e_kg * 2:
            t.stable_kg, t.stable_ms = s.weight_kg, now_ms
        if now_ms - (t.stable_ms or now_ms) >= p.confirm_ms:
            g.state = IDENTIFY
            t.identify_ms = now_ms
            try_decide(g, now_ms, out)
        return
    if g.state == RELEASED and (g.io.ir_exit or g.io.loop_exit):
        # Released (perhaps by hand) while the exit sensors were already active: no edge will
        # come to say it is leaving, the weight does.
        g.state = LEAVING
    if g.state in (IDENTIFY, HELD, RELEASED):
        _watch_standing(g, t, w, now_ms, out)
        return
    if g.state == LEAVING:
        if g.stab.at_zero(w) and not g.io.loop_exit and not g.io.ir_exit:
            g.command_barrier(False, "decision", out)
            g.finish()


def _held_elsewhere(
    samples: list[tuple[int, int]], since_ms: int, stable_kg: int, p: GatePolicy
) -> int | None:
    """The level the reading held, before the window that proved ``stable_kg``, when that
    level lies more than ``jump_kg`` away from it; None when it held nowhere else.

    ``samples`` are the (ms, kg) seen with both beams clear, oldest first. "Held" is meant as
    the stability detector means it: samples reaching back half a stability window from the
    last one before the window, every one of them beyond ``jump_kg`` on the same side. The
    bounce after the last axle fades towards the stable weight, so it never holds out there
    that long — not even when frames arrive late and bunched (a loaded PC), or land on every
    crest because the bounce is near the frame rate (the simulator sped up). A jammer
    switched on mid-settling leaves the truck's own level there right up to the jump.
    """
    before = [(ms, kg) for ms, kg in samples if ms < since_ms]
    if not before:
        return None
    horizon = before[-1][0] - p.stability_window_ms // 2
    first = max((i for i, (ms, _) in enumerate(before) if ms <= horizon), default=None)
    if first is None:
        return None  # on the platform too briefly before settling to have stood anywhere
    run = sorted(kg - stable_kg for _, kg in before[first:])
    if run[0] > p.jump_kg or run[-1] < -p.jump_kg:
        return stable_kg + run[len(run) // 2]
    return None


def _blocked_but_stable(g: GateState, t: Txn, kg: int, now_ms: int, out: list[Action]) -> None:
    p = g.policy
    own = t.plate
    own_ms = max((ts for r, ts in t.plate_times if own and r.plate == own.plate), default=None)
    # A different plate read at the entry after ours: someone is right behind us.
    queued = own is not None and own_ms is not None and any(
        r.plate != own.plate and ts >= own_ms for r, ts in g.last_plates
    )
    regained = t.beams_clear_once and kg - t.clear_weight > p.second_vehicle_kg
    if g.io.ir_entry and regained:
        _second_vehicle(g, t, kg, out)
        return
    # A plate queued behind us is only evidence once the beam has stayed blocked for the grace
    # time: a truck still driving on also blocks the entry beam, and its partial weight can be
    # stable between two axles while the next truck's plate is read.
    if t.blocked_since_ms is None:
        t.blocked_since_ms = now_ms
        return
    if now_ms - t.blocked_since_ms < p.beam_grace_ms:
        return
    if g.io.ir_entry and queued:
        _second_vehicle(g, t, kg, out)
        return
    beams = [b for b, on in (("entry", g.io.ir_entry), ("exit", g.io.ir_exit)) if on]
    g.alarm("not_fully_on_platform", out, {"weight_kg": kg, "beams_blocked": beams})
    if "not_fully_on_platform" not in t.flags:
        t.flags.append("not_fully_on_platform")
    g.state = HELD  # no weighing; the truck must pull fully on, or the operator acts


def _second_vehicle(g: GateState, t: Txn, kg: int, out: list[Action]) -> None:
    if "second_vehicle" not in t.flags:
        t.flags.append("second_vehicle")
        t.alone_kg = t.clear_weight if t.beams_clear_once else None
    g.alarm("second_vehicle", out, {"weight_kg": kg, "before_kg": t.clear_weight})
    # No weighing of two trucks at once: hold until one backs off or the operator acts.
    g.state = HELD


def _watch_standing(g: GateState, t: Txn, w: int, now_ms: int, out: list[Action]) -> None:
    """After a stable reading the truck stands still: any large change is suspicious."""
    p = g.policy
    beams_clear = not g.io.ir_entry and not g.io.ir_exit
    if g.state == HELD and g.stab.at_zero(w) and not g.io.ir_entry:
        _abandon(g, now_ms, out)
        return
    if t.stable_kg is None:
        alone = t.alone_kg is None or w <= t.alone_kg + p.jump_kg
        if g.state == HELD and t.weighing is None and beams_clear and alone and set(t.flags) <= {
            "not_fully_on_platform", "second_vehicle"
        }:
            # Pulled fully on, or the vehicle behind backed off: weigh this truck now. The
            # flag stays, so the weighing is held for the operator to look at.
            g.state = ON_PLATFORM
            t.on_platform_ms = now_ms
            t.beams_clear_once = True
            g.stab.reset()
        return
    leaving = g.state == RELEASED and (g.io.ir_exit or g.io.loop_exit)
    if g.state == RELEASED and t.overridden and g.stab.at_zero(w) and not leaving:
        # The truck released by hand is off the scale: close, so the next one is weighed.
        g.command_barrier(False, "platform_empty", out)
        g.finish()
        return
    if leaving or (g.state == RELEASED and t.overridden):
        return
    if g.io.ir_entry and w - t.stable_kg > p.second_vehicle_kg:
        _hold_late(g, "second_vehicle", {"weight_kg": w, "stable_kg": t.stable_kg}, now_ms, out)
        return
    if abs(w - t.stable_kg) > p.jump_kg and not g.io.ir_entry:
        if g.state == HELD and g.stab.at_zero(w):
            return  # the held truck backed off; handled by the platform-empty check
        _hold_late(g, "weight_jump", {"weight_kg": w, "stable_kg": t.stable_kg}, now_ms, out)


def _hold_late(
    g: GateState, code: str, detail: dict[str, Any], now_ms: int, out: list[Action]
) -> None:
    t = g.txn
    assert t is not None
    if code not in t.flags:
        t.flags.append(code)
    leaving = g.io.ir_exit or g.io.loop_exit or (g.weight or 0) < g.policy.min_vehicle_kg
    if leaving and t.weighing is None:
        # The truck is driving off (through a forced barrier, say) before it was weighed: no
        # weighing is written for a truck that has left; the exit loop or the empty platform
        # records the escape.
        if "left_unweighed" not in t.flags:
            t.flags.append("left_unweighed")
        g.state = HELD
        return
    g.alarm(code, out, detail)
    if g.state == RELEASED and not t.passages:
        # Fail closed: the release was for the weight we saw, not this one.
        t.released = False
        g.command_barrier(False, "decision", out)
    if g.state in (ON_PLATFORM, IDENTIFY, RELEASED):
        if t.weighing is None:
            decide_now(g, now_ms, out, force=True)
        g.state = HELD


def _abandon(g: GateState, now_ms: int, out: list[Action]) -> None:
    """The platform is empty again before a decision. Out through the exit (the exit loop
    held by a vehicle right ahead, so no new loop edge) is an escape; backing off is not."""
    t = g.txn
    if t is not None and t.exit_seen and not t.passages and g.io.loop_exit:
        passage(g, now_ms, out, how="exit_beam")
    g.finish()
