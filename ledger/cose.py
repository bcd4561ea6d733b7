"""COSE_Sign1 (RFC 9052 §4.2, §4.4): build, parse strictly, verify.

Only what e-tickets need: one signer, attached payload, algorithm chosen by the caller. Signing
and verifying take callables so the same code serves Ed25519 ``SignerKey``/``VerifierKey`` and,
in tests, the ES256 structure vectors of the COSE working group.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ledger.ticket_errors import CoseError, TicketSignatureError

__all__ = [
    "COSE_SIGN1_TAG",
    "HEADER_ALG",
    "HEADER_CRIT",
    "HEADER_CONTENT_TYPE",
    "HEADER_KID",
    "ALG_EDDSA",
    "ALG_ES256",
    "SIG_CONTEXT",
    "Sign1",
    "cbor_decode_exact",
    "encode_header",
    "sig_structure",
    "sign1",
    "verify_sign1",
]

COSE_SIGN1_TAG = 18  # RFC 9052 §2, Table 1
HEADER_ALG = 1  # RFC 9052 §3.1, Table 2
HEADER_CRIT = 2
HEADER_CONTENT_TYPE = 3
HEADER_KID = 4
ALG_EDDSA = -8  # RFC 9053 §2.2
ALG_ES256 = -7  # RFC 9053 §2.1
SIG_CONTEXT = "Signature1"  # RFC 9052 §4.4

_MAX_DEPTH = 16  # tickets nest two levels; anything deep is hostile


def cbor_decode_exact(data: bytes, what: str) -> Any:
    """Decode exactly one CBOR item that spans all of ``data``.

    Rejects trailing bytes, duplicate map keys and indefinite lengths (which cbor2 otherwise
    accepts silently), and turns every decoder failure into :class:`CoseError`.
    """
    fp = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            fp, max_depth=_MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False
        )
        value = decoder.decode()
    except RecursionError as exc:
        raise CoseError(f"{what}: CBOR nested too deeply") from exc
    except Exception as exc:  # noqa: BLE001 - third-party decoder; any failure is bad input
        raise CoseError(f"{what}: not valid CBOR ({exc})") from exc
    if fp.tell() != len(data):
        raise CoseError(
            f"{what}: {len(data) - fp.tell()} unexpected byte(s) after the CBOR item"
        )
    return value


def encode_header(header: Mapping[int, Any]) -> bytes:
    """Serialise a protected header: deterministic CBOR, and the empty map as b'' (§3)."""
    return cbor2.dumps(dict(header), canonical=True) if header else b""


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The ``Sig_structure`` for COSE_Sign1 (RFC 9052 §4.4), the bytes actually signed."""
    return cbor2.dumps([SIG_CONTEXT, protected, external_aad, payload])


def _check_header_map(header: object, what: str) -> dict[int | str, Any]:
    if not isinstance(header, Mapping):
        raise CoseError(f"COSE_Sign1 {what} header is {type(header).__name__}, expected a map")
    for label in header:
        if not isinstance(label, int | str) or isinstance(label, bool):
            raise CoseError(f"COSE_Sign1 {what} header label {label!r} is not an int or text")
    return dict(header)


@dataclass(frozen=True)
class Sign1:
    """A parsed COSE_Sign1. ``protected`` keeps the exact bytes received: they are signed."""

    protected: bytes
    unprotected: Mapping[int | str, Any]
    payload: bytes
    signature: bytes
    protected_header: Mapping[int | str, Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.protected == b"":
            header: dict[int | str, Any] = {}
        else:
            header = _check_header_map(
                cbor_decode_exact(self.protected, "protected header"), "protected"
            )
        unprotected = _check_header_map(self.unprotected, "unprotected")
        both = set(header) & set(unprotected)
        if both:
            raise CoseError(
                f"COSE_Sign1 header label(s) {sorted(map(str, both))} appear in both the "
                "protected and unprotected header (RFC 9052 §3 forbids it)"
            )
        if HEADER_CRIT in unprotected:
            raise CoseError("COSE_Sign1 'crit' header must be protected (RFC 9052 §3.1)")
        if HEADER_CRIT in header:
            raise CoseError(
                f"COSE_Sign1 marks header(s) {header[HEADER_CRIT]!r} critical; "
                "coalgate understands no critical extensions"
            )
        object.__setattr__(self, "protected_header", header)
        object.__setattr__(self, "unprotected", unprotected)

    @classmethod
    def decode(cls, data: bytes) -> Sign1:
        """Parse tagged (18) or untagged COSE_Sign1 bytes; any other tag is rejected."""
        item = cbor_decode_exact(data, "COSE_Sign1")
        if isinstance(item, cbor2.CBORTag):
            if item.tag != COSE_SIGN1_TAG:
                raise CoseError(
                    f"CBOR tag {item.tag} where COSE_Sign1 (tag 18) was expected"
                )
            item = item.value
        if not isinstance(item, list | tuple) or len(item) != 4:
            raise CoseError("COSE_Sign1 must be an array of 4: protected, unprotected, "
                            "payload, signature")
        protected, unprotected, payload, signature = item
        if not isinstance(protected, bytes):
            raise CoseError("COSE_Sign1 protected header must be a byte string")
        if payload is None:
            raise CoseError("COSE_Sign1 has a detached payload; tickets carry it attached")
        if not isinstance(payload, bytes):
            raise CoseError("COSE_Sign1 payload must be a byte string")
        if not isinstance(signature, bytes):
            raise CoseError("COSE_Sign1 signature must be a byte string")
        return cls(protected, unprotected, payload, signature)

    def encode(self, *, tagged: bool = True) -> bytes:
        body = [self.protected, dict(self.unprotected), self.payload, self.signature]
        return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, body) if tagged else body)

    def header(self, label: int) -> Any:
        """A header value, protected first; None when absent."""
        if label in self.protected_header:
            return self.protected_header[label]
        return self.unprotected.get(label)

    @property
    def alg(self) -> Any:
        return self.header(HEADER_ALG)

    @property
    def kid(self) -> Any:
        return self.header(HEADER_KID)

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        # §4.4: "If there are no protected attributes, a zero-length bstr is used", even when
        # the sender put an encoded empty map (0xA0) on the wire (vector sign-pass-01).
        protected = self.protected if self.protected_header else b""
        return sig_structure(protected, self.payload, external_aad)


def sign1(
    payload: bytes,
    sign: Callable[[bytes], bytes],
    *,
    protected: Mapping[int, Any],
    unprotected: Mapping[int | str, Any] | None = None,
    external_aad: bytes = b"",
    tagged: bool = True,
) -> bytes:
    """Build and sign a COSE_Sign1; returns its CBOR bytes."""
    protected_bytes = encode_header(protected)
    signature = sign(sig_structure(protected_bytes, payload, external_aad))
    header: dict[int | str, Any] = dict(unprotected or {})
    return Sign1(protected_bytes, header, payload, signature).encode(
        tagged=tagged
    )


def verify_sign1(
    msg: Sign1,
    alg: int,
    verify: Callable[[bytes, bytes], bool],
    *,
    external_aad: bytes = b"",
) -> None:
    """Check ``msg`` claims algorithm ``alg`` and that ``verify(tbs, signature)`` holds.

    Raises :class:`CoseError` for a missing/other algorithm and
    :class:`TicketSignatureError` for a signature that does not verify.
    """
    got = msg.alg
    if got is None:
        raise CoseError("COSE_Sign1 has no 'alg' header")
    if isinstance(got, bool) or got != alg:
        raise CoseError(f"COSE_Sign1 algorithm {got!r} is not the expected {alg}")
    if not verify(msg.to_be_signed(external_aad), msg.signature):
        raise TicketSignatureError(
            "COSE_Sign1 signature does not verify: the content, protected header or signature "
            "was altered, or it was signed by another key"
        )
