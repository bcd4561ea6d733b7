"""Errors raised while encoding, decoding and verifying e-tickets and trust lists.

Each error carries ``reason``, the gate's reason code for it (docs/entry-kinds.md
``ticket_check.result``), so callers map errors to verdicts without string matching.
"""

from __future__ import annotations

from ledger.errors import LedgerError

__all__ = [
    "TicketError",
    "TicketFormatError",
    "CoseError",
    "TicketSignatureError",
    "UnknownIssuerError",
    "TicketExpiredError",
    "TicketNotYetValidError",
    "TrustListError",
    "REASON_LABELS",
]


class TicketError(LedgerError):
    """Root of the e-ticket errors."""

    reason: str = "malformed"


class TicketFormatError(TicketError):
    """The text is not a well-formed ticket: prefix, base45, zlib, CBOR, COSE or claims."""

    reason = "malformed"


class CoseError(TicketFormatError):
    """A COSE_Sign1 structure is malformed or uses a header/algorithm we do not accept."""


class TicketSignatureError(TicketError):
    """The COSE signature does not verify with the issuer key the kid names."""

    reason = "bad_signature"


class UnknownIssuerError(TicketError):
    """No key in the trust list matches the ticket's kid and issuer at its issue time."""

    reason = "unknown_issuer"


class TicketExpiredError(TicketError):
    """``now`` is at or after the ticket's valid-to (exp)."""

    reason = "expired"


class TicketNotYetValidError(TicketError):
    """``now`` is before the ticket's valid-from (nbf)."""

    reason = "not_yet_valid"


class TrustListError(LedgerError):
    """A trust list is malformed, badly signed, or older than the one already held."""


# Short operator-facing labels for each verdict, Chinese first (the UI default), then English.
REASON_LABELS: dict[str, tuple[str, str]] = {
    "ok": ("票据有效", "ticket valid"),
    "malformed": ("无法识别的票据二维码", "not a readable e-ticket QR code"),
    "bad_signature": ("签名无效，票据被篡改或伪造", "bad signature: altered or forged ticket"),
    "unknown_issuer": ("签发单位不在信任列表中", "issuer key not in the trust list"),
    "expired": ("票据已过期", "ticket expired"),
    "not_yet_valid": ("票据尚未生效", "ticket not yet valid"),
    "wrong_site": ("票据不属于本站点", "ticket is for another site"),
    "wrong_plate": ("车牌与票据不符", "plate does not match the ticket"),
    "revoked": ("票据已作废", "ticket revoked"),
    "used": ("票据已使用", "ticket already used"),
}
