"""Getting ``CT1:`` text out of a QR scanner line or a camera frame (zxing-cpp).

Pure functions over text and pixel arrays; the device adapters that own the serial scanner or
the camera call these.
"""

from __future__ import annotations

import numpy as np
import zxingcpp

from ledger.ticket import PREFIX

__all__ = ["from_scanner_text", "decode_frame", "ticket_texts_in_frame"]


def from_scanner_text(raw: str | bytes) -> str:
    """Clean one scanner read: USB-HID/serial scanners add CR/LF, some a symbology prefix
    (e.g. ``]Q1``), and a few send lower case; base45 is upper case only."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    # Not spaces: a space is a base45 digit; let the decoder judge it.
    text = text.strip("\r\n\t\x00")
    if text.startswith("]Q") and len(text) > 3:  # AIM symbology identifier for QR
        text = text[3:]
    if text[: len(PREFIX)].upper() == PREFIX:
        text = PREFIX + text[len(PREFIX):]
        if not any(c.isupper() for c in text[len(PREFIX):]):
            text = text.upper()  # a scanner in lower-case mode; base45 has no lower case
    return text


def decode_frame(frame: np.ndarray) -> list[str]:
    """Every QR code text zxing-cpp finds in a grey or BGR frame."""
    results = zxingcpp.read_barcodes(
        frame,
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
        try_rotate=True,
        try_downscale=True,
    )
    return [r.text for r in results if r.valid]


def ticket_texts_in_frame(frame: np.ndarray) -> list[str]:
    """Only the codes that look like e-tickets (other QR codes in view are ignored)."""
    return [t for t in decode_frame(frame) if t.startswith(PREFIX)]
