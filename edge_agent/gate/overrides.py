"""Operator overrides (docs/operator.md): a typed plate, a manual barrier-up, a void, and the
supervisor's "open lane". Each is recorded with the operator's name, role and reason before it
takes effect; none of them can get round the rules:

* ``manual_barrier_up`` releases only a *held* truck whose weighing is recorded, never an
  overloaded or voided one, and never a truck still driving on, settling or being identified;
* an empty-lane barrier-up is ``open_lane``: supervisors only, recorded, alarmed, and the lane
  closes again by itself (``GatePolicy.open_lane_ms``) or when a vehicle comes on or passes.

Refusals raise :class:`OperatorRefused` with a message in Chinese and English (the console
shows it as is).
"""

from __future__ import annotations

from typing import Any

from edge_agent.gate.decision import try_decide
from edge_agent.gate.events import Action, Operator, Record
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import HELD, IDENTIFY, IDLE, LEAVING, RELEASED, Txn

SUPERVISOR = "supervisor"


class OperatorRefused(Exception):
    """An operator action that the gate will not carry out (the message says why)."""


def _body(ev: Operator, txn: str | None, **extra: Any) -> dict[str, Any]:
    """The override entry body the central reads (docs/entry-kinds.md): keep these keys."""
    return {"txn": txn, "action": ev.action, "operator": ev.operator, "role": ev.role,
            "reason": ev.reason, **extra}


def on_operator(g: GateState, ev: Operator, now_ms: int, out: list[Action]) -> None:
    if not ev.reason.strip() or not ev.operator.strip():
        raise OperatorRefused("人工干预需要操作员和填写的原因 / an override needs the "
                              "operator's name and a typed reason")
    t = g.txn
    if ev.action == "manual_plate":
        _manual_plate(g, t, ev, now_ms, out)
    elif ev.action == "manual_barrier_up":
        _manual_barrier_up(g, t, ev, out)
    elif ev.action == "open_lane":
        _open_lane(g, ev, now_ms, out)
    elif ev.action == "void":
        _void(g, t, ev, now_ms, out)
    else:
        raise OperatorRefused(f"未知的操作 / unknown operator action {ev.action!r}")


def _manual_plate(g: GateState, t: Txn | None, ev: Operator, now_ms: int,
                  out: list[Action]) -> None:
    if t is None or not ev.plate:
        raise OperatorRefused("手工录入车牌需要磅上有车并填写车牌 / manual plate needs a truck "
                              "on the platform and a plate")
    if t.weighing is not None:
        raise OperatorRefused("该车已称重，如需重称请先作废 / this truck is already weighed; "
                              "void it to re-weigh")
    from edge_agent.plates.grammar import normalise_plate

    plate = normalise_plate(ev.plate)
    if plate is None:
        raise OperatorRefused(
            f"{ev.plate!r} 不是有效车牌 / is not a valid plate: type the province character, "
            f"the office letter and 5 letters or digits (6 on new-energy plates), no I or O, "
            f"e.g. 陕K12345 or 晋B1234挂"
        )
    cand = t.candidate
    was_waiting = t.waiting_for_plate
    out.append(Record("override", _body(ev, t.id, plate=plate,
                                        read_plate=cand.plate if cand else None,
                                        read_conf_pm=cand.conf_pm if cand else None)))
    t.manual_plate = plate
    t.ticket_checked_for = None
    if g.state == HELD and was_waiting:
        g.state = IDENTIFY  # held only for want of a plate: decide now
    try_decide(g, now_ms, out)


def barrier_up_refusal(g: GateState) -> str | None:
    """Why ``manual_barrier_up`` may not raise the barrier now; None when it may. Pure."""
    t = g.txn
    if t is None or g.state == IDLE:
        return ("车道无车：空车道抬杆须由班长执行“开放车道” / the lane is empty: an empty-lane "
                "barrier-up is the supervisor's open_lane action")
    if g.state != HELD:
        return (f"车辆尚未称重完毕（{g.state}），只能放行已称重并被拦停的车辆 / the truck is not "
                f"held after a weighing (state {g.state}): only a held, weighed truck may be "
                f"released by hand")
    if t.voided:
        return "该业务已作废，请重新过磅 / this transaction is voided; weigh the truck again"
    if t.weighing is None:
        return ("该车没有称重记录，不能人工放行；请让车辆单独完全停在磅上称重 / no weighing is "
                "recorded for this truck: it must stand fully and alone on the platform and be "
                "weighed before it can be released by hand")
    reasons = list(t.weighing.get("reasons") or []) + list(t.flags)
    if any("overload" in r for r in reasons):
        return ("超载车辆不得放行，请卸载后重新过磅 / an overloaded truck may not be released; "
                "unload it and weigh again")
    return None


def _manual_barrier_up(g: GateState, t: Txn | None, ev: Operator, out: list[Action]) -> None:
    why = barrier_up_refusal(g)
    if why is not None:
        raise OperatorRefused(why)
    assert t is not None and t.weighing is not None
    out.append(Record("override", _body(ev, t.id, plate=t.weighing.get("plate"),
                                        reasons=list(t.weighing.get("reasons") or []),
                                        flags=list(t.flags))))
    t.released = True
    t.overridden = True
    t.passages = 0
    g.state = RELEASED
    g.command_barrier(True, "override", out)


def _open_lane(g: GateState, ev: Operator, now_ms: int, out: list[Action]) -> None:
    if ev.role != SUPERVISOR:
        raise OperatorRefused("开放车道只能由班长（supervisor）执行 / open_lane is a supervisor "
                              f"action; this account's role is {ev.role!r}")
    if g.state != IDLE or g.txn is not None or g.occupied():
        raise OperatorRefused(
            f"磅上有车（{g.state}），不能开放车道；请按流程称重后放行 / the lane is not empty "
            f"(state {g.state}, {g.weight} kg): weigh the truck; open_lane is for an empty lane")
    out.append(Record("override", _body(ev, None)))
    g.alarm("lane_opened_by_hand", out, {"operator": ev.operator, "role": ev.role,
                                         "reason": ev.reason,
                                         "close_after_ms": g.policy.open_lane_ms})
    g.command_barrier(True, "open_lane", out)
    g.lane_open_until_ms = now_ms + g.policy.open_lane_ms


def _void(g: GateState, t: Txn | None, ev: Operator, now_ms: int, out: list[Action]) -> None:
    target = ev.txn or (t.id if t else None)
    if target is None:
        raise OperatorRefused("没有可作废的业务，请填写业务号 / nothing to void: name the "
                              "transaction")
    out.append(Record("override", _body(ev, target)))
    g.book.replay(-1, "override", {"txn": target, "action": "void"}, now_ms)
    if t is not None and t.id == target:
        t.voided = True
        t.released = False
        if g.state == RELEASED and not t.passages:
            g.command_barrier(False, "override", out)
        if g.state != LEAVING:
            g.state = HELD
