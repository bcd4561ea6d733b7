"""Gate-side e-ticket verification, fully offline.

Checks, in order (the first failure is the verdict): readable (``malformed``), issuer key in
the trust list (``unknown_issuer``), signature (``bad_signature``), the key covers the ticket
(``unknown_issuer``), loading site (``wrong_site``), validity window (``not_yet_valid`` /
``expired``), revocation (``revoked``), prior use here or reported by the central (``used``),
and last the plate (``wrong_plate``) — last because a plate read can be wrong and the operator
can correct it, while every earlier failure is definitive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.tickets.store import TicketStore, TicketStoreError
from ledger.keys import VerifierKey
from ledger.note import parse_note
from ledger.ticket import Ticket, loose_plate, parse_ticket, verify_parsed, verify_ticket
from ledger.ticket_errors import REASON_LABELS, TicketError, TrustListError
from ledger.trust import TrustList, parse_time

__all__ = ["GateTicketVerifier", "TicketCheck", "TicketDeltaError", "normalise_plate_for_match"]

REASONS = tuple(REASON_LABELS)


class TicketDeltaError(TicketStoreError):
    """A delta from the central is malformed or cannot be applied."""


@dataclass(frozen=True)
class TicketCheck:
    ok: bool
    reason: str  # "ok" or a ticket_check result code (docs/entry-kinds.md)
    ticket: Ticket | None
    message: str  # for the operator console and LED: Chinese, then English, then detail

    @classmethod
    def verdict(cls, reason: str, ticket: Ticket | None, detail: str = "") -> TicketCheck:
        zh, en = REASON_LABELS[reason]
        message = f"{zh} / {en}" + (f": {detail}" if detail else "")
        return cls(reason == "ok", reason, ticket, message)


def normalise_plate_for_match(plate: str) -> str:
    """The plate grammar's normal form when the text is a valid plate, else a loose form."""
    try:
        from edge_agent.plates.grammar import normalise_plate
    except ImportError:  # the plate package is optional for ticket-only deployments
        return loose_plate(plate)
    return normalise_plate(plate) or loose_plate(plate)


class GateTicketVerifier:
    """Verifies ``CT1:`` tickets for one site against a local store; never needs the network.

    ``trust_roots`` are the bureau trust-root keys that sign trust lists; without them a gate
    cannot accept a trust-list delta (tickets are then checked against the list already held).

    Thread-safe: the gate checks tickets in its own thread while the outbox thread applies
    deltas from the central (:meth:`apply_delta`). A SQLite connection belongs to the thread
    that opened it, so each thread gets its own connection to the store (WAL: readers never
    wait for the writer); the trust list is swapped as one reference.
    """

    def __init__(
        self,
        site_id: str,
        store_path: Path,
        *,
        trust_roots: Iterable[VerifierKey] = (),
        gate_site: str | None = None,
    ) -> None:
        self.site_id = site_id
        # ``site_id`` is the loading site tickets must name; ``gate_site`` this gate's own
        # ledger site id (default: the same). They differ at a mine's second weighbridge, where
        # a `used` delta from the first gate (whose id is the loading site) is a use elsewhere.
        self.gate_site = gate_site or site_id
        self.trust_roots = tuple(trust_roots)
        self.store_path = store_path
        self._local = threading.local()
        self._stores: list[TicketStore] = []
        self._stores_lock = threading.Lock()
        self._trust: TrustList | None = None
        held = self.store.trust_note()
        if held is not None:
            # It was verified when applied; re-verify when we can, in case the file was
            # edited while the agent was down (raises TrustListError: fail loudly at start).
            if self.trust_roots:
                self._trust = TrustList.open(held[1], self.trust_roots)
            else:
                self._trust = TrustList.from_text(parse_note(held[1])[0])

    @property
    def store(self) -> TicketStore:
        """The calling thread's connection to the ticket store (opened on first use)."""
        store: TicketStore | None = getattr(self._local, "store", None)
        if store is None:
            store = TicketStore(self.store_path, shared=True)
            self._local.store = store
            with self._stores_lock:
                self._stores.append(store)
        return store

    def close(self) -> None:
        """Close every thread's connection (call when the other threads have stopped)."""
        with self._stores_lock:
            stores, self._stores = self._stores, []
        for store in stores:
            store.close()
        self._local = threading.local()

    @property
    def trust_list(self) -> TrustList | None:
        return self._trust

    def check(self, qr_text: str, *, plate: str | None, now: datetime) -> TicketCheck:
        """The verdict for one scanned code. Does not record a use (see :meth:`mark_used`)."""
        try:
            parsed = parse_ticket(qr_text)
        except TicketError as exc:
            return TicketCheck.verdict("malformed", None, str(exc))
        ticket = parsed.ticket
        if self._trust is None:
            return TicketCheck.verdict(
                "unknown_issuer", ticket,
                "no trust list loaded at this gate; sync with the central once",
            )
        try:
            verify_parsed(parsed, self._trust)
        except TicketError as exc:
            return TicketCheck.verdict(exc.reason, ticket, str(exc))
        if ticket.site != self.site_id:
            return TicketCheck.verdict(
                "wrong_site", ticket, f"ticket is for site {ticket.site}, this is {self.site_id}"
            )
        # A naive time is taken as UTC (never as the PC's local zone, which varies).
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        if now < ticket.valid_from:
            return TicketCheck.verdict(
                "not_yet_valid", ticket, f"valid from {ticket.valid_from:%Y-%m-%d %H:%M}Z"
            )
        if now >= ticket.valid_to:
            return TicketCheck.verdict(
                "expired", ticket, f"expired {ticket.valid_to:%Y-%m-%d %H:%M}Z"
            )
        revoked = self.store.revocation(ticket.ticket_id)
        if revoked is not None:
            return TicketCheck.verdict(
                "revoked", ticket, f"{ticket.ticket_id} revoked {revoked.revoked_at}: "
                f"{revoked.reason}"
            )
        use = self.store.use(ticket.ticket_id)
        if use is not None:
            where = f"this gate (seq {use.seq})" if use.here else f"site {use.site}"
            return TicketCheck.verdict(
                "used", ticket, f"{ticket.ticket_id} already used at {where}, {use.used_at}"
            )
        if plate is None:
            return TicketCheck.verdict(
                "ok", ticket, f"{ticket.ticket_id} {ticket.plate}; plate not read, not compared"
            )
        if normalise_plate_for_match(plate) != normalise_plate_for_match(ticket.plate):
            return TicketCheck.verdict(
                "wrong_plate", ticket, f"ticket is for {ticket.plate}, the truck is {plate}"
            )
        return TicketCheck.verdict("ok", ticket, f"{ticket.ticket_id} {ticket.plate}")

    def mark_used(self, ticket_id: str, *, seq: int, now: datetime) -> None:
        """Record that the ticket released a truck here (``seq``: the ledger entry)."""
        self.store.record_use(ticket_id, site=self.gate_site, seq=seq, used_at=now, here=True)

    def tickets_for_plate(self, plate: str, *, now: datetime) -> list[str]:
        """Issued tickets (from central deltas) for a plate: when the driver's phone is dead."""
        return self.store.issued_for_plate(normalise_plate_for_match(plate), now)

    def apply_delta(self, delta: Mapping[str, Any], *, now: datetime) -> None:
        """Apply one message from the central's ``tickets`` topic (docs/tickets.md §Deltas).

        ``{"type": "revoked", "ticket_id", "at", "reason"}``,
        ``{"type": "used", "ticket_id", "site", "seq", "at"}`` (a use seen elsewhere),
        ``{"type": "issued", "ticket": "CT1:..."}``, ``{"type": "trust", "note": "..."}``.
        """
        kind = delta.get("type")
        try:
            if kind == "revoked":
                self.store.revoke(
                    _str(delta, "ticket_id"), _time(delta, "at"), _str(delta, "reason", "")
                )
            elif kind == "used":
                site = _str(delta, "site")
                seq = delta.get("seq")
                if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
                    raise TicketDeltaError("ticket delta 'used': seq must be an integer")
                self.store.record_use(
                    _str(delta, "ticket_id"), site=site, seq=seq, used_at=_time(delta, "at"),
                    here=site == self.gate_site,
                )
            elif kind == "issued":
                text = _str(delta, "ticket")
                if self._trust is None:
                    raise TicketDeltaError("ticket delta 'issued' arrived before any trust list")
                ticket = verify_ticket(text, self._trust)
                if ticket.site == self.site_id:
                    self.store.add_issued(
                        ticket.ticket_id, normalise_plate_for_match(ticket.plate),
                        ticket.valid_to, text,
                    )
            elif kind == "trust":
                self._apply_trust(_str(delta, "note"))
            else:
                raise TicketDeltaError(
                    f"ticket delta type {kind!r} is not one of revoked, used, issued, trust"
                )
        except (TicketError, TrustListError) as exc:
            raise TicketDeltaError(f"ticket delta {kind!r}: {exc}") from exc

    def _apply_trust(self, note: str) -> None:
        new = TrustList.open(note, self.trust_roots)
        held = self.store.trust_note()
        if held is not None and new.serial < held[0]:
            raise TrustListError(
                f"trust list serial {new.serial} is older than the held serial {held[0]}; "
                "refusing a rollback"
            )
        self.store.set_trust_note(new.serial, note)
        self._trust = new


def _str(delta: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = delta.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise TicketDeltaError(f"ticket delta {delta.get('type')!r}: '{key}' must be text")
    return value


def _time(delta: Mapping[str, Any], key: str) -> datetime:
    try:
        return parse_time(_str(delta, key), f"ticket delta '{key}'")
    except TrustListError as exc:
        raise TicketDeltaError(str(exc)) from exc
