"""Deciding a standing truck: which pass it is, its ticket, the rules, the ``weighing`` record,
and the release (barrier up) or hold that follows. Fail closed: nothing but a clean decision
raises the barrier here.
"""

from __future__ import annotations

from typing import Any

from edge_agent.gate.book import TareRecord
from edge_agent.gate.events import Action, Record
from edge_agent.gate.rules import TicketFacts, Weighed, advisory, decide
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import HELD, IDENTIFY, RELEASED, Txn


def pass_kind(
    g: GateState, plate: str, now_ms: int, weight_kg: int | None
) -> tuple[str, TareRecord | None]:
    """Which pass this is: pair with an open tare (two-pass), use a stored or registered
    tare (one-pass), or measure the tare. A truck barely heavier than its known tare is
    empty: it is re-tared (so water in the tank meets the tare band)."""
    p = g.policy
    if p.mode in ("two_pass", "auto"):
        rec = g.book.open_tares.get(plate)
        if rec and now_ms - rec.at_ms <= p.open_tare_expiry_h * 3_600_000:
            return "gross", rec
    if p.mode in ("one_pass", "auto"):
        rec = g.book.stored_tares.get(plate)
        if rec is None or now_ms - rec.at_ms > p.tare_expiry_h * 3_600_000:
            registered = g.book.registered_tares.get(plate)
            rec = TareRecord("registered", registered, None, now_ms) if registered else None
        if rec is not None and (weight_kg is None or weight_kg >= rec.kg + p.min_load_kg):
            return "one_pass", rec
    return "tare", None


def check_ticket(g: GateState, t: Txn, plate: str, now_ms: int, out: list[Action]) -> None:
    """Verify the truck's QR against the plate it is weighed under (again if the plate
    changes), and record the result."""
    if t.qr_text is None or t.ticket_checked_for == plate:
        return
    t.ticket_checked_for = plate
    if g.verifier is None:
        t.ticket = TicketFacts(False, "unknown_issuer", None, None)
    else:
        res = g.verifier.check(t.qr_text, plate=plate, now=g.dt(now_ms))
        tk = res.ticket
        t.ticket = TicketFacts(
            ok=bool(res.ok),
            reason="ok" if res.ok else str(res.reason),
            ticket_id=getattr(tk, "ticket_id", None),
            planned_net_kg=getattr(tk, "planned_net_kg", None),
        )
    out.append(Record("ticket_check", {"txn": t.id, "ticket_id": t.ticket.ticket_id,
                                       "result": t.ticket.reason, "plate": plate}))


def try_decide(g: GateState, now_ms: int, out: list[Action]) -> None:
    """Decide once everything the decision needs is in, or keep waiting for it."""
    t = g.txn
    if t is None or g.state != IDENTIFY or t.weighing is not None:
        return
    plate = t.plate
    if plate is None:
        return  # wait for a plate (camera or operator); the barrier stays down
    waited = now_ms - (t.identify_ms or now_ms)
    if (g.policy.await_reader and not t.reader_done and t.manual_plate is None
            and waited < g.policy.identify_timeout_ms):
        return  # the gate's own read is still coming: compare it before deciding
    kind, _ = pass_kind(g, plate.plate, now_ms, t.stable_kg)
    check_ticket(g, t, plate.plate, now_ms, out)
    waiting_ticket = (
        kind != "tare" and g.policy.ticket_required and t.ticket is None
        and now_ms - (t.identify_ms or now_ms) < g.policy.identify_timeout_ms
    )
    if waiting_ticket:
        return
    decide_now(g, now_ms, out)


def decide_now(g: GateState, now_ms: int, out: list[Action], force: bool = False) -> None:
    """Decide with what is known: record the weighing, then release or hold."""
    t = g.txn
    assert t is not None
    p = g.policy
    plate = t.plate
    if plate is None or t.stable_kg is None:
        if force:
            g.state = HELD
        return
    kind, tare_rec = pass_kind(g, plate.plate, now_ms, t.stable_kg)
    axles = plate.axles or g.book.axles.get(plate.plate) or p.default_axles
    weighed = Weighed(
        pass_kind=kind,
        weight_kg=t.stable_kg,
        tare_kg=tare_rec.kg if tare_rec else None,
        axles=axles,
        tare_median=g.book.median_tare(plate.plate),
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
    g.last_weighing_ms = now_ms
    out.append(Record("weighing", body, ref=f"weighing:{t.id}"))
    g.last_decision = {"txn": t.id, "decision": body["decision"], "reasons": reasons,
                       "pass": kind, "weight_kg": t.stable_kg, "net_kg": body["net_kg"]}
    for code in reasons + warn:
        g.alarm(code, out, {"weight_kg": t.stable_kg, "limit_kg": body["limit_kg"]}
                if code == "overload" else {"weight_kg": t.stable_kg})
    if release:
        _apply_release_to_book(g, t, kind, plate.plate, now_ms)
        t.released = True
        g.state = RELEASED
        g.command_barrier(True, "decision", out)
    else:
        g.state = HELD


def hold_unread(g: GateState, t: Txn, waited_ms: int, out: list[Action]) -> None:
    """Fail closed: no credible plate in time. Hold, raise an alarm, ask the operator."""
    cand = t.candidate
    g.alarm("plate_unread", out, {
        "weight_kg": t.stable_kg, "waited_ms": waited_ms,
        "candidate": cand.plate if cand else None,
        "candidate_conf_pm": cand.conf_pm if cand else None,
        "min_conf_pm": t.min_conf_pm,
    })
    g.state = HELD
    g.last_decision = {"txn": t.id, "decision": "hold", "reasons": ["plate_unread"],
                       "pass": None, "weight_kg": t.stable_kg, "net_kg": None}


def _apply_release_to_book(g: GateState, t: Txn, kind: str, plate: str, now_ms: int) -> None:
    assert t.stable_kg is not None
    if kind == "tare":
        rec = TareRecord(t.id, t.stable_kg, None, now_ms)
        g.book.add_tare(plate, rec, open_for_gross=g.policy.mode != "one_pass")
    else:
        g.book.close_open_tare(plate)
