"""Start-up after a power cut: the transaction the ledger left open is closed or resumed by
what the platform shows (or by the released truck driving out)."""

from __future__ import annotations

from edge_agent.gate.events import Action, Record
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import HELD, IDLE, LEAVING, ON_PLATFORM, RECOVERING, RELEASED, Txn


def recover(g: GateState, w: int, now_ms: int, out: list[Action]) -> None:
    """A weight while recovering: an empty platform closes the open transaction; a stable
    truck resumes it, held if it no longer weighs what was recorded."""
    r = g.recovered
    assert r is not None
    s = g.stab.add(now_ms, w)
    if g.stab.at_zero(w):
        out.append(Record("recovery", {"txn": r.txn, "resolution": "closed",
                                       "weighing_seq": r.weighing_seq,
                                       "detail": {"platform": "empty"}}))
        if r.barrier_up:
            g.command_barrier(False, "timeout", out, txn=Txn(r.txn, now_ms))
        g.recovered = None
        g.state = IDLE
        g.stab.reset()
        return
    if s is None:
        return
    t = Txn(id=r.txn, started_ms=now_ms, beams_clear_once=True, stable_kg=s.weight_kg,
            stable_ms=now_ms, weighing=r.weighing, weighing_seq=r.weighing_seq,
            min_conf_pm=g.policy.plate_min_conf_pm)
    g.txn = t
    g.recovered = None
    out.append(Record("recovery", {"txn": r.txn, "resolution": "resumed",
                                   "weighing_seq": r.weighing_seq,
                                   "detail": {"weight_kg": s.weight_kg}}))
    if r.weighing is None:
        t.stable_kg = None
        t.on_platform_ms = now_ms
        g.state = ON_PLATFORM
        return
    recorded = int(r.weighing["weight_kg"])
    if abs(recorded - s.weight_kg) > g.policy.jump_kg:
        t.flags.append("weight_jump")
        g.alarm("weight_jump", out, {"weight_kg": s.weight_kg, "recorded_kg": recorded})
        g.state = HELD
        return
    t.stable_kg = recorded
    if r.weighing.get("decision") == "release":
        t.released = True
        g.state = RELEASED
        if not r.barrier_up:
            g.command_barrier(True, "decision", out)
        else:
            g.barrier_cmd_up = True
    else:
        g.state = HELD


def released_truck_left(g: GateState, now_ms: int, out: list[Action]) -> bool:
    """A passage while recovering: the truck released before the power cut is driving out
    now, which is not an escape. True when that closed the recovered transaction."""
    r = g.recovered
    if g.state == RECOVERING and r is not None and r.weighing is not None:
        if r.weighing.get("decision") == "release":
            out.append(Record("passage", {"txn": r.txn, "direction": "exit",
                                          "released": True}))
            out.append(Record("recovery", {"txn": r.txn, "resolution": "closed",
                                           "weighing_seq": r.weighing_seq,
                                           "detail": {"passage": "after restart"}}))
            g.recovered = None
            g.state = LEAVING
            g.txn = Txn(r.txn, now_ms, released=True, passages=1)
            g.barrier_cmd_up = r.barrier_up
            return True
    return False
