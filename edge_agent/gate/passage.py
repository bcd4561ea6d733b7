"""Beams, loops and barrier feedback: the released truck leaving, the next one arriving, and
what must not happen — a forced barrier, a tailgater on the same release, an escape (冲卡)."""

from __future__ import annotations

from typing import Any

from edge_agent.gate.events import Action, Inputs, Record
from edge_agent.gate.recovery import released_truck_left
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import ENTERING, IDLE, LEAVING, RELEASED


def on_inputs(g: GateState, ev: Inputs, now_ms: int, out: list[Action]) -> None:
    old, g.io = g.io, ev
    if not g.io_known:
        g.io_known = True
        old = ev  # the first snapshot is a baseline, not a set of edges
    if "io" in g.offline:
        g.offline.discard("io")
        out.append(Record("device", {"device": "io", "state": "online", "detail": {}}))
    # Barrier moving without a command: forced (冲卡) or tampered. Fail closed: command it
    # down at once, and again (``GateState.forced_down``, driven by the clock) until the
    # feedback agrees.
    raised = (old.barrier_down and not ev.barrier_down) or (ev.barrier_up and not old.barrier_up)
    if not g.barrier_cmd_up and raised:
        if g.forced_down is None:
            g.alarm("barrier_forced", out, {"feedback": "down_lost"}, txn=g.ref_txn())
            g.command_barrier(False, "forced", out, txn=g.ref_txn())
            g.forced_down = (now_ms + g.policy.forced_retry_ms[0], 0)
    if g.forced_down is not None and ev.barrier_down and not ev.barrier_up:
        g.forced_down = None  # the feedback agrees: down
    t = g.txn
    if t is not None and old.loop_entry and not ev.loop_entry:
        t.left_entry_loop = True
    if (
        t is not None and ev.loop_entry and not old.loop_entry and t.next_arrival_ms is None
        and (t.left_entry_loop or t.beams_clear_once)
    ):
        # The next vehicle is on the entry loop: from now on the lane camera sees it, not us.
        t.next_arrival_ms = now_ms
    if (
        t is not None and g.state == ENTERING and not ev.ir_entry and not ev.ir_exit
        and g.weight is not None and g.weight >= g.policy.min_vehicle_kg
    ):
        t.beams_clear_once = True
        t.clear_weight = g.weight
    if t is not None and ev.ir_exit and not old.ir_exit:
        if g.state == LEAVING and t.exit_cleared and g.occupied():
            # Our truck is off the platform, yet another vehicle is crossing the exit
            # beam on the same release: a tailgater (跟车). Close the barrier on it.
            g.command_barrier(False, "decision", out)
            g.finish()
            follower = g.begin(now_ms)
            follower.exit_seen = True
            g.state = ENTERING
            g.alarm("second_vehicle", out, {"following": t.id, "weight_kg": g.weight})
            t = follower
        else:
            t.exit_seen = True
    if t is not None and g.state == LEAVING and old.ir_exit and not ev.ir_exit:
        t.exit_cleared = True
    if ev.loop_exit and not old.loop_exit:
        if t is None and g.lane_open_until_ms is not None:
            # Through the lane a supervisor opened, with nothing on the scale: recorded (the
            # open_lane override and its alarm stand for it) and the lane closes behind it.
            out.append(Record("passage", {"txn": None, "direction": "exit", "released": False,
                                          "open_lane": True}))
            g.command_barrier(False, "open_lane", out)
        else:
            passage(g, now_ms, out)
    if g.state == RELEASED and (ev.ir_exit or ev.loop_exit):
        g.state = LEAVING
    if g.state == LEAVING and not ev.loop_exit and old.loop_exit:
        if g.weight is not None and g.stab.at_zero(g.weight) and not ev.ir_exit:
            g.command_barrier(False, "decision", out)
            g.finish()
        elif (t is not None and t.passages and not ev.ir_exit and g.weight is not None
              and g.weight >= g.policy.min_vehicle_kg):
            # Our truck is through; the weight left on the platform is the next truck.
            g.command_barrier(False, "decision", out)
            g.finish()
            g.begin(now_ms)
            g.state = ENTERING
    if g.state == IDLE and (ev.ir_entry or ev.ir_exit) and not (old.ir_entry or old.ir_exit):
        pass  # a beam alone does not start a transaction; weight does


def passage(g: GateState, now_ms: int, out: list[Action], how: str = "exit_loop") -> None:
    """A vehicle went out through the exit: recorded, and an escape unless it was released."""
    if released_truck_left(g, now_ms, out):
        return
    t = g.txn
    if t is not None and t.passages and how != "exit_loop":
        return  # already counted by the loop
    released = bool(t and t.released and t.passages == 0)
    if t is not None:
        t.passages += 1
    out.append(Record("passage", {"txn": t.id if t else None, "direction": "exit",
                                  "released": released}))
    if not released:
        detail: dict[str, Any] = {"state": g.state, "barrier_cmd_up": g.barrier_cmd_up,
                                  "seen_by": how}
        if t is not None:
            detail["weighed"] = t.weighing is not None
        g.alarm("escape", out, detail, txn=t)
        if not g.barrier_cmd_up and g.io.barrier_down:
            g.alarm("barrier_forced", out, {"feedback": "passage_while_down"}, txn=t)
