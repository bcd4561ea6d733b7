"""QR codes for ``CT1:`` tickets: error-correction level Q, alphanumeric mode (segno).

Level Q (25 % recovery) survives a cracked phone screen or a creased printout; alphanumeric is
the QR mode base45 was designed for (5.5 bits per character). Version 12 (65×65 modules) is the
largest we promise gates and phones scan comfortably at arm's length.
"""

from __future__ import annotations

import io

import segno

from ledger.ticket_errors import TicketFormatError

__all__ = ["MAX_TICKET_VERSION", "FORMATS", "TicketTooLargeError", "make_qr", "render_qr"]

MAX_TICKET_VERSION = 12
FORMATS = ("png", "svg", "pdf")


class TicketTooLargeError(TicketFormatError):
    """The ticket needs a QR code larger than the version allowed."""


def make_qr(text: str, *, max_version: int | None = MAX_TICKET_VERSION) -> segno.QRCode:
    """The QR code for ``text`` at level Q; refuse one above ``max_version`` (None: any)."""
    qr = segno.make(text, error="q", boost_error=False, micro=False)
    if max_version is not None and int(qr.version) > max_version:
        raise TicketTooLargeError(
            f"ticket needs QR version {qr.version} at level Q ({len(text)} characters); "
            f"at most {max_version} scans reliably. Shorten buyer/destination/coal type "
            "(each Chinese character costs 3 bytes) or the ticket id"
        )
    return qr


def render_qr(text: str, fmt: str, *, scale: int = 8, max_version: int | None = 12) -> bytes:
    """Render the ticket QR as PNG, SVG or PDF bytes (quiet zone of 4 modules included)."""
    if fmt not in FORMATS:
        raise ValueError(f"QR format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = io.BytesIO()
    make_qr(text, max_version=max_version).save(out, kind=fmt, scale=scale, border=4)
    return out.getvalue()
