"""Errors of the central's e-ticket layer. The library raises these; the API picks the status."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CentralTicketError",
    "TicketInputError",
    "TicketNotFoundError",
    "TicketStateError",
    "IdempotencyConflictError",
    "QuotaRefusedError",
    "NoIssuerKeyError",
    "IssuerKeyNotFoundError",
    "TrustRootMissingError",
    "SiteNotAllowedError",
]


class CentralTicketError(Exception):
    """Root of the central e-ticket errors."""


class TicketInputError(CentralTicketError):
    """A field of an issuance or configuration request is invalid (names the field)."""


class TicketNotFoundError(CentralTicketError):
    pass


class TicketStateError(CentralTicketError):
    """The ticket's state does not allow the change (voiding a used or voided ticket)."""


class IdempotencyConflictError(CentralTicketError):
    """An idempotency key already issued a ticket for a different request."""


class QuotaRefusedError(CentralTicketError):
    """Policy ``enforce`` and the ticket would pass the remaining approved capacity."""

    def __init__(self, message: str, status: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status


class NoIssuerKeyError(CentralTicketError):
    """The enterprise has no issuer key valid now, so no ticket can be signed."""


class IssuerKeyNotFoundError(CentralTicketError):
    pass


class TrustRootMissingError(CentralTicketError):
    """No bureau trust-root signer key is configured, so no trust list can be published."""


class SiteNotAllowedError(CentralTicketError):
    """The site is unknown or belongs to another enterprise."""
