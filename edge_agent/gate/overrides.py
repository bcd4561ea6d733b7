"""Operator overrides (docs/operator.md): a typed plate, a manual barrier-up, a void. Each is
recorded with the operator's name and reason before it takes effect; some are refused."""

from __future__ import annotations

from edge_agent.gate.decision import try_decide
from edge_agent.gate.events import Action, Operator, Record
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import HELD, IDENTIFY, LEAVING, RELEASED


class OperatorRefused(Exception):
    """An operator action that the gate will not carry out (the message says why)."""


def on_operator(g: GateState, ev: Operator, now_ms: int, out: list[Action]) -> None:
    if not ev.reason.strip() or not ev.operator.strip():
        raise OperatorRefused("an override needs the operator's name and a typed reason")
    t = g.txn
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
        if g.state == HELD and was_waiting:
            g.state = IDENTIFY  # held only for want of a plate: decide now
        try_decide(g, now_ms, out)
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
            g.state = RELEASED
        g.command_barrier(True, "override", out)
        return
    if ev.action == "void":
        target = ev.txn or (t.id if t else None)
        if target is None:
            raise OperatorRefused("nothing to void: name the transaction")
        out.append(Record("override", {"txn": target, "action": "void",
                                       "operator": ev.operator, "reason": ev.reason}))
        g.book.replay(-1, "override", {"txn": target, "action": "void"}, now_ms)
        if t is not None and t.id == target:
            t.voided = True
            if g.state in (RELEASED,) and not t.passages:
                g.command_barrier(False, "override", out)
            if g.state != LEAVING:
                g.state = HELD
        return
    raise OperatorRefused(f"unknown operator action {ev.action!r}")
