"""Identification: which truck a plate read or a scanned QR belongs to (docs/plates.md).

A read or a QR that arrives while no truck is being weighed waits for the next one
(``GateState.begin`` takes it); one for the standing truck may complete its decision.
"""

from __future__ import annotations

from dataclasses import replace

from edge_agent.gate.decision import try_decide
from edge_agent.gate.events import Action, PlateRead, TicketScan
from edge_agent.gate.state import GateState
from edge_agent.gate.txn import HELD, IDENTIFY, LEAVING, RELEASED, Txn


def on_plate(g: GateState, ev: PlateRead, now_ms: int, out: list[Action]) -> None:
    """Attribute a plate read to a truck by state and time, never by arrival order alone.

    The gate's own reader tags its reads with the transaction it took the frames for.
    Pushed ANPR reads are the platform truck's unless the same camera already read another
    plate for it, or the frame was taken after the next vehicle reached the entry loop.
    """
    t = g.txn
    seen = ev.seen_ms if ev.seen_ms is not None else now_ms
    if ev.txn is not None:
        if t is None or t.id != ev.txn or t.weighing is not None:
            return  # that truck is decided or gone: a late read changes nothing
        t.reader_done = True
        if t.next_arrival_ms is not None and seen >= t.next_arrival_ms:
            try_decide(g, now_ms, out)
            return  # the frame may show the next truck on the entry loop
        _add_plate(g, t, ev, now_ms, out)
        return
    if t is None or g.state in (RELEASED, LEAVING):
        own = t.plate if t is not None else None
        if own is None or own.plate != ev.plate:  # a repeat of the leaving truck's plate
            g.queue_plate(ev, now_ms)  # is not the next truck's
        return
    same_camera = [r for r in t.plates if r.camera == ev.camera]
    if same_camera and all(r.plate != ev.plate for r in same_camera):
        # This camera already read a different plate for the truck on the platform:
        # the reading belongs to the next truck in the queue.
        g.queue_plate(ev, now_ms)
        return
    if not same_camera and t.next_arrival_ms is not None and seen >= t.next_arrival_ms:
        if ev.seen_ms is not None:
            g.queue_plate(ev, now_ms)  # taken after the next truck arrived: its plate
            return
        # No capture time, our truck has no plate from this camera yet and another vehicle
        # waits on the entry loop: this may be our late read or the next truck's. Never
        # guess: it becomes a candidate below the threshold for the operator to confirm.
        ev = replace(ev, conf_pm=min(ev.conf_pm, t.min_conf_pm - 1))
    _add_plate(g, t, ev, now_ms, out)


def _add_plate(g: GateState, t: Txn, ev: PlateRead, now_ms: int, out: list[Action]) -> None:
    was_waiting = t.waiting_for_plate
    t.plates.append(ev)
    t.plate_times.append((ev, now_ms))
    if g.state == HELD and was_waiting and t.plate is not None:
        g.state = IDENTIFY  # held only for want of a plate: decide now
    try_decide(g, now_ms, out)


def on_ticket(g: GateState, ev: TicketScan, now_ms: int, out: list[Action]) -> None:
    t = g.txn
    if t is None or g.state in (RELEASED, LEAVING):
        g.pending_qr = (ev.qr_text, now_ms)
        return
    if t.weighing is not None:
        return  # decided already; a new QR does not reopen the decision
    t.qr_text = ev.qr_text
    t.ticket = None
    t.ticket_checked_for = None
    try_decide(g, now_ms, out)
