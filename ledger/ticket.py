"""Electronic coal tickets (电子煤管票): the ``CT1:`` QR text format.

Layers, outermost first (docs/tickets.md has the integrator's spec):

    "CT1:" + base45( [zlib]( COSE_Sign1[ protected {alg: EdDSA, kid}, {}, CWT claims, sig ] ) )

The CWT claims (RFC 8392) use the standard iss/exp/nbf/iat/cti and one private-use claim
(``CLAIM_TICKET`` = -65537, below -65536 as RFC 8392 §9.1 reserves for private use) holding a
map of the coal-ticket fields with small integer keys, which keeps a typical ticket inside a
version-12 QR code at error-correction level Q.

Everything here is pure: bytes and datetimes in, typed values or typed errors out.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2

from ledger.base45 import b45decode, b45encode
from ledger.cose import (
    ALG_EDDSA,
    HEADER_ALG,
    HEADER_KID,
    Sign1,
    cbor_decode_exact,
    sign1,
    verify_sign1,
)
from ledger.keys import SignerKey
from ledger.ticket_errors import (
    CoseError,
    TicketExpiredError,
    TicketFormatError,
    TicketNotYetValidError,
    TicketSignatureError,
    UnknownIssuerError,
)
from ledger.trust import TrustList

__all__ = [
    "PREFIX",
    "CLAIM_ISS",
    "CLAIM_EXP",
    "CLAIM_NBF",
    "CLAIM_IAT",
    "CLAIM_CTI",
    "CLAIM_TICKET",
    "TicketField",
    "Ticket",
    "ParsedTicket",
    "encode_claims",
    "decode_claims",
    "issue_ticket",
    "parse_ticket",
    "verify_ticket",
    "verify_parsed",
    "check_validity",
    "default_quota_period",
    "loose_plate",
    "MAX_TEXT_CHARS",
]

PREFIX = "CT1:"

# RFC 8392 §4 registered claims
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_NBF = 5
CLAIM_IAT = 6
CLAIM_CTI = 7
# Private-use claim (RFC 8392 §9.1: integers < -65536) holding the coal-ticket fields.
CLAIM_TICKET = -65537


class TicketField:
    """Integer keys of the map under ``CLAIM_TICKET``. Never renumbered; CT1 verifiers reject
    keys they do not know, so a new field comes with a new prefix."""

    SITE = 1  # text: site id of the loading gate the ticket is valid at
    PLATE = 2  # text: normalised plate, e.g. 陕K12345
    BUYER = 3  # text
    DESTINATION = 4  # text
    COAL_TYPE = 5  # text, e.g. 块煤
    PLANNED_NET_KG = 6  # uint, kilograms
    QUOTA_PERIOD = 7  # uint YYYYMM, the capacity month the trip counts against


_REQUIRED_CLAIMS = (CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_CTI, CLAIM_TICKET)  # nbf optional
_TICKET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ISSUER_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
CHINA_OFFSET = timedelta(hours=8)
MAX_TEXT_CHARS = 64  # per text field: keeps the code scannable and the UI sane
MAX_NUMERIC_DATE = 2**32 - 1  # NumericDate beyond 2106 is a damaged ticket, not a plan
_MAX_QR_TEXT = 4296  # the largest alphanumeric QR code; anything longer is not from a code
_MAX_COSE_BYTES = 2953  # the largest byte-mode QR payload; bounds zlib output (no bombs)


def _utc(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None:
        raise TicketFormatError(
            f"{what} must be timezone-aware (UTC); got naive {dt.isoformat()}"
        )
    return dt.astimezone(UTC)


def _from_numeric_date(value: object, what: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMERIC_DATE:
        raise TicketFormatError(f"claim {what} must be a NumericDate (integer seconds)")
    return datetime.fromtimestamp(value, UTC)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise TicketFormatError(f"ticket field {what} must be text of 1-{MAX_TEXT_CHARS} chars")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise TicketFormatError(f"ticket field {what} contains control characters")
    return value


@dataclass(frozen=True)
class Ticket:
    """The fields of one e-ticket, for one truck trip. Times are UTC, whole seconds."""

    ticket_id: str
    issuer: str  # iss: the issuing enterprise (mine / plant) id
    site: str  # the loading site (gate) the ticket is valid at
    plate: str
    buyer: str
    destination: str
    coal_type: str
    planned_net_kg: int
    quota_period: str  # "YYYY-MM"
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime

    def __post_init__(self) -> None:
        # Validates on construction so a Ticket in hand is always encodable; raises ValueError
        # (TicketFormatError when decoding) naming the field.
        if not _TICKET_ID.fullmatch(self.ticket_id):
            raise TicketFormatError(
                f"ticket id {self.ticket_id!r} must be 1-64 of A-Z a-z 0-9 . _ - "
                "(starting with a letter or digit)"
            )
        for name in ("issuer", "site"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _ISSUER_SITE.fullmatch(value):
                raise TicketFormatError(
                    f"{name} {value!r} must be 1-64 of A-Z a-z 0-9 . _ / - "
                    "(an enterprise or site id, not a name)"
                )
        for name in ("plate", "buyer", "destination", "coal_type"):
            _text(getattr(self, name), name)
        if (
            isinstance(self.planned_net_kg, bool)
            or not isinstance(self.planned_net_kg, int)
            or not 0 < self.planned_net_kg < 1_000_000
        ):
            raise TicketFormatError(
                f"planned net {self.planned_net_kg!r} kg must be an integer from 1 to 999999"
            )
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", str(self.quota_period)):
            raise TicketFormatError(
                f"quota period {self.quota_period!r} must be a month as YYYY-MM, e.g. 2026-11"
            )
        for name in ("valid_from", "valid_to", "issued_at"):
            dt = getattr(self, name)
            if not isinstance(dt, datetime):
                raise TicketFormatError(f"{name} must be a datetime")
            utc = _utc(dt, name).replace(microsecond=0)
            object.__setattr__(self, name, utc)
        if self.valid_to <= self.valid_from:
            raise TicketFormatError(
                f"valid-to {self.valid_to.isoformat()} is not after valid-from "
                f"{self.valid_from.isoformat()}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (RFC 3339 UTC times), for the CLI, APIs and ledger bodies."""
        def ts(dt: datetime) -> str:
            return dt.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "ticket_id": self.ticket_id,
            "issuer": self.issuer,
            "site": self.site,
            "plate": self.plate,
            "buyer": self.buyer,
            "destination": self.destination,
            "coal_type": self.coal_type,
            "planned_net_kg": self.planned_net_kg,
            "quota_period": self.quota_period,
            "valid_from": ts(self.valid_from),
            "valid_to": ts(self.valid_to),
            "issued_at": ts(self.issued_at),
        }


def default_quota_period(issued_at: datetime) -> str:
    """The capacity month a ticket counts against unless it says otherwise: its month of
    issue in China Standard Time (UTC+8, no daylight saving), as ``YYYY-MM``."""
    return (issued_at.astimezone(UTC) + CHINA_OFFSET).strftime("%Y-%m")


def encode_claims(ticket: Ticket) -> bytes:
    """The CWT claims map as deterministic CBOR (RFC 8949 §4.2.1)."""
    year, month = ticket.quota_period.split("-")
    fields = {
        TicketField.SITE: ticket.site,
        TicketField.PLATE: ticket.plate,
        TicketField.BUYER: ticket.buyer,
        TicketField.DESTINATION: ticket.destination,
        TicketField.COAL_TYPE: ticket.coal_type,
        TicketField.PLANNED_NET_KG: ticket.planned_net_kg,
    }
    # Like nbf: the quota month is left out when it is the (China time) month of issue.
    if ticket.quota_period != default_quota_period(ticket.issued_at):
        fields[TicketField.QUOTA_PERIOD] = int(year) * 100 + int(month)
    claims: dict[int, Any] = {
        CLAIM_ISS: ticket.issuer,
        CLAIM_EXP: int(ticket.valid_to.timestamp()),
        CLAIM_IAT: int(ticket.issued_at.timestamp()),
        CLAIM_CTI: ticket.ticket_id.encode("ascii"),
        CLAIM_TICKET: fields,
    }
    # nbf is optional in a CWT; a ticket valid from the moment of issue (the usual case)
    # leaves it out, and the six bytes saved keep typical tickets inside a version-12 code.
    if ticket.valid_from != ticket.issued_at:
        claims[CLAIM_NBF] = int(ticket.valid_from.timestamp())
    return cbor2.dumps(claims, canonical=True)


def decode_claims(payload: bytes) -> Ticket:
    """Parse and validate a claims payload; raise :class:`TicketFormatError` naming the field.

    The payload must be deterministic CBOR: the issuer produced it that way, and requiring it
    means no two decoders can read the same signed bytes differently.
    """
    claims = cbor_decode_exact(payload, "CWT claims")
    if not isinstance(claims, Mapping):
        raise TicketFormatError("CWT claims must be a CBOR map")
    missing = [k for k in _REQUIRED_CLAIMS if k not in claims]
    if missing:
        raise TicketFormatError(f"CWT claims missing required claim key(s) {missing}")
    fields = claims[CLAIM_TICKET]
    if not isinstance(fields, Mapping):
        raise TicketFormatError(f"claim {CLAIM_TICKET} (ticket fields) must be a map")
    need = [v for k, v in vars(TicketField).items() if k.isupper() and k != "QUOTA_PERIOD"]
    absent = [k for k in need if k not in fields]
    if absent:
        raise TicketFormatError(f"ticket fields missing key(s) {absent}")
    cti = claims[CLAIM_CTI]
    if not isinstance(cti, bytes):
        raise TicketFormatError("claim cti (7) must be a byte string")
    try:
        ticket_id = cti.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TicketFormatError("claim cti (7) must be an ASCII ticket id") from exc
    issued_at = _from_numeric_date(claims[CLAIM_IAT], "iat (6)")
    if TicketField.QUOTA_PERIOD in fields:
        period = fields[TicketField.QUOTA_PERIOD]
        if isinstance(period, bool) or not isinstance(period, int) or not 0 <= period <= 999912:
            raise TicketFormatError("ticket quota period must be an integer YYYYMM")
        quota_period = f"{period // 100:04d}-{period % 100:02d}"
    else:
        quota_period = default_quota_period(issued_at)
    planned = fields[TicketField.PLANNED_NET_KG]
    if isinstance(planned, bool) or not isinstance(planned, int):
        raise TicketFormatError("ticket planned net must be an integer number of kilograms")
    issuer = claims[CLAIM_ISS]
    site = fields[TicketField.SITE]
    if not isinstance(issuer, str) or not isinstance(site, str):
        raise TicketFormatError("claim iss (1) and ticket site must be text")
    ticket = Ticket(
        ticket_id=ticket_id,
        issuer=issuer,
        site=site,
        plate=_text(fields[TicketField.PLATE], "plate"),
        buyer=_text(fields[TicketField.BUYER], "buyer"),
        destination=_text(fields[TicketField.DESTINATION], "destination"),
        coal_type=_text(fields[TicketField.COAL_TYPE], "coal type"),
        planned_net_kg=planned,
        quota_period=quota_period,
        valid_from=_from_numeric_date(claims.get(CLAIM_NBF, claims[CLAIM_IAT]), "nbf (5)"),
        valid_to=_from_numeric_date(claims[CLAIM_EXP], "exp (4)"),
        issued_at=issued_at,
    )
    if encode_claims(ticket) != payload:
        raise TicketFormatError(
            "CWT claims are not in coalgate's deterministic encoding (unknown claims, "
            "non-shortest integers or unsorted keys); re-issue the ticket"
        )
    return ticket


def issue_ticket(ticket: Ticket, signer: SignerKey, *, compress: bool | None = None) -> str:
    """Sign ``ticket`` and return its ``CT1:`` text.

    ``compress``: True always zlib-compresses, False never, None (default) only when that makes
    the code smaller — it seldom does for a ~200-byte ticket whose signature is incompressible.
    """
    cose = sign1(
        encode_claims(ticket),
        signer.sign,
        protected={HEADER_ALG: ALG_EDDSA, HEADER_KID: signer.key_id},
    )
    if compress is None:
        packed = zlib.compress(cose, 9)
        body = packed if len(packed) < len(cose) else cose
    else:
        body = zlib.compress(cose, 9) if compress else cose
    return PREFIX + b45encode(body)


def _looks_like_zlib(data: bytes) -> bool:
    """RFC 1950 header: CM = 8 (deflate) and the 16-bit header a multiple of 31. CBOR for a
    COSE_Sign1 (0xD2 tag 18, 0x84 array) never passes, so this cannot mistake one for the
    other."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes) -> bytes:
    # Bounded: a zlib bomb cannot make us allocate more than a QR code could ever hold.
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, _MAX_COSE_BYTES + 1)
    except zlib.error as exc:
        raise TicketFormatError(f"ticket body is neither COSE nor valid zlib ({exc})") from exc
    if len(out) > _MAX_COSE_BYTES or d.unconsumed_tail:
        raise TicketFormatError("compressed ticket inflates to more than a QR code can hold")
    if not d.eof or d.unused_data:
        raise TicketFormatError("compressed ticket is truncated or has trailing bytes")
    return out


@dataclass(frozen=True)
class ParsedTicket:
    """A structurally valid ticket whose signature has NOT been checked yet."""

    ticket: Ticket
    kid: bytes
    sign1: Sign1
    compressed: bool


def parse_ticket(text: str) -> ParsedTicket:
    """Strip the prefix, base45-decode, inflate, parse COSE and claims. No signature check.

    Every failure raises :class:`TicketFormatError` (reason ``malformed``).
    """
    if not isinstance(text, str):
        raise TicketFormatError("ticket must be text")
    # Only line ends: a space is a base45 digit (RFC 9285 never puts one last, but spaces
    # inside a damaged read must reach the base45 decoder and be judged there).
    text = text.strip("\r\n")
    if len(text) > _MAX_QR_TEXT:
        raise TicketFormatError(f"ticket text is {len(text)} characters, longer than any QR code")
    if not text.startswith(PREFIX):
        raise TicketFormatError(
            f"not an e-ticket: text does not start with {PREFIX!r} "
            f"(starts with {text[:8]!r}); scan the ticket QR, not another code"
        )
    raw = b45decode(text[len(PREFIX):])
    if not raw:
        raise TicketFormatError("ticket body is empty")
    compressed = _looks_like_zlib(raw)
    cose_bytes = _inflate(raw) if compressed else raw
    msg = Sign1.decode(cose_bytes)
    if HEADER_ALG not in msg.protected_header:
        raise CoseError("ticket COSE 'alg' must be in the protected header")
    if HEADER_KID not in msg.protected_header:
        raise CoseError("ticket COSE 'kid' must be in the protected header (it is signed there)")
    if msg.unprotected:
        raise CoseError("ticket COSE unprotected header must be empty")
    if msg.protected != cbor2.dumps(dict(msg.protected_header), canonical=True):
        raise CoseError("ticket COSE protected header is not deterministically encoded")
    alg = msg.protected_header[HEADER_ALG]
    if alg != ALG_EDDSA or isinstance(alg, bool):
        raise CoseError(f"ticket COSE algorithm {alg!r} is not EdDSA (-8)")
    kid = msg.protected_header[HEADER_KID]
    if not isinstance(kid, bytes) or len(kid) != 4:
        raise CoseError("ticket COSE kid must be the 4-byte C2SP key id")
    if len(msg.signature) != 64:
        raise CoseError(f"ticket signature is {len(msg.signature)} bytes; Ed25519 needs 64")
    return ParsedTicket(decode_claims(msg.payload), kid, msg, compressed)


def verify_ticket(text: str, trust: TrustList, *, now: datetime | None = None) -> Ticket:
    """Parse, check the signature against ``trust`` and (when ``now`` is given) the window.

    Order: malformed, unknown_issuer (no key with this kid), bad_signature, unknown_issuer
    (key belongs to another issuer or was not valid at issue time), not_yet_valid / expired.
    Raises the specific :class:`~ledger.ticket_errors.TicketError`; returns the ticket.
    """
    return verify_parsed(parse_ticket(text), trust, now=now)


def verify_parsed(
    parsed: ParsedTicket, trust: TrustList, *, now: datetime | None = None
) -> Ticket:
    """:func:`verify_ticket` for a ticket already parsed (the gate parses once)."""
    ticket = parsed.ticket
    candidates = trust.candidates(parsed.kid)
    if not candidates:
        raise UnknownIssuerError(
            f"no issuer key with id {parsed.kid.hex()} in the trust list; update the trust "
            "list, or the ticket was not issued by a recognised enterprise"
        )
    signed_by = None
    for entry in candidates:
        try:
            verify_sign1(parsed.sign1, ALG_EDDSA, entry.key.verify)
        except TicketSignatureError:
            continue
        signed_by = entry
        break
    if signed_by is None:
        raise TicketSignatureError(
            f"ticket {ticket.ticket_id}: signature does not verify with issuer key "
            f"{parsed.kid.hex()}; the ticket was altered or forged"
        )
    signed_by.check_covers(
        issuer=ticket.issuer,
        issued_at=ticket.issued_at,
        valid_from=ticket.valid_from,
        valid_to=ticket.valid_to,
        max_validity=trust.max_validity,
    )
    if now is not None:
        check_validity(ticket, now)
    return ticket


_PLATE_SEPARATORS = str.maketrans("", "", " \t·•.-_")


def loose_plate(text: str) -> str:
    """A plate for comparison when no grammar is at hand: NFKC (full-width to ASCII),
    separators and spaces removed, upper-case. ``"陕k·8a3b2"`` -> ``"陕K8A3B2"``."""
    return unicodedata.normalize("NFKC", text).translate(_PLATE_SEPARATORS).upper()


def check_validity(ticket: Ticket, now: datetime) -> None:
    """Raise when ``now`` is outside [valid_from, valid_to)."""
    now = _utc(now, "now")
    if now < ticket.valid_from:
        raise TicketNotYetValidError(
            f"ticket {ticket.ticket_id} is valid from {ticket.valid_from:%Y-%m-%d %H:%M}Z; "
            f"it is now {now:%Y-%m-%d %H:%M}Z"
        )
    if now >= ticket.valid_to:
        raise TicketExpiredError(
            f"ticket {ticket.ticket_id} expired at {ticket.valid_to:%Y-%m-%d %H:%M}Z"
        )
