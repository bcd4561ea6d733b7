"""Gate-side e-tickets: decode from the scanner or camera, verify offline, remember uses."""

from edge_agent.tickets.scan import decode_frame, from_scanner_text, ticket_texts_in_frame
from edge_agent.tickets.store import TicketStore, TicketStoreError
from edge_agent.tickets.verifier import GateTicketVerifier, TicketCheck, TicketDeltaError

__all__ = [
    "GateTicketVerifier",
    "TicketCheck",
    "TicketDeltaError",
    "TicketStore",
    "TicketStoreError",
    "decode_frame",
    "from_scanner_text",
    "ticket_texts_in_frame",
]
