from __future__ import annotations

import zlib
from datetime import timedelta

import cbor2
import pytest
import segno

from ledger.base45 import b45decode, b45encode
from ledger.cose import ALG_EDDSA, HEADER_ALG, HEADER_KID, Sign1, sign1
from ledger.keys import SignerKey
from ledger.ticket import (
    CLAIM_TICKET,
    PREFIX,
    TicketField,
    encode_claims,
    issue_ticket,
    parse_ticket,
    verify_ticket,
)
from ledger.ticket_errors import (
    CoseError,
    TicketExpiredError,
    TicketFormatError,
    TicketNotYetValidError,
    TicketSignatureError,
    UnknownIssuerError,
)
from ledger.ticket_qr import TicketTooLargeError, make_qr, render_qr
from ledger.trust import TrustList
from tests.tickets.conftest import ISSUER, T0, typical_ticket


def reencode(text: str, mutate) -> str:
    """Decode a ticket's COSE, let ``mutate`` change the parts, re-encode (no re-signing)."""
    item = cbor2.loads(b45decode(text[len(PREFIX):]))
    parts = list(item.value)
    mutate(parts)
    return PREFIX + b45encode(cbor2.dumps(cbor2.CBORTag(item.tag, parts)))


def test_round_trip(ticket_text: str, trust: TrustList) -> None:
    assert ticket_text.startswith("CT1:")
    assert verify_ticket(ticket_text, trust, now=T0) == typical_ticket()
    parsed = parse_ticket(ticket_text)
    assert parsed.kid == trust.keys[0].key.key_id
    assert parsed.sign1.protected_header == {HEADER_ALG: ALG_EDDSA, HEADER_KID: parsed.kid}
    assert not parsed.compressed


def test_claims_layout(ticket_text: str) -> None:
    claims = cbor2.loads(parse_ticket(ticket_text).sign1.payload)
    assert claims[1] == ISSUER
    assert claims[7] == b"T2611050123"
    assert claims[6] == int(T0.timestamp()) and claims[4] == int(T0.timestamp()) + 48 * 3600
    assert 5 not in claims  # nbf == iat is left out
    fields = claims[CLAIM_TICKET]
    assert fields[TicketField.PLATE] == "陕K8A3B2"
    assert fields[TicketField.PLANNED_NET_KG] == 34500
    assert TicketField.QUOTA_PERIOD not in fields  # month of issue (China time) is implied


def test_optional_claims_present_when_they_differ(issuer_key: SignerKey, trust: TrustList) -> None:
    t = typical_ticket(valid_from=T0 + timedelta(hours=2), quota_period="2026-12")
    claims = cbor2.loads(parse_ticket(issue_ticket(t, issuer_key)).sign1.payload)
    assert claims[5] == int(T0.timestamp()) + 7200
    assert claims[CLAIM_TICKET][TicketField.QUOTA_PERIOD] == 202612
    assert verify_ticket(issue_ticket(t, issuer_key), trust) == t


def test_quota_period_default_is_china_month(issuer_key: SignerKey, trust: TrustList) -> None:
    # 2026-11-30 20:00Z is already 2026-12-01 04:00 in China
    late = T0.replace(day=30, hour=20)
    t = typical_ticket(issued_at=late, valid_from=late, valid_to=late + timedelta(hours=4),
                       quota_period="2026-12")
    text = issue_ticket(t, issuer_key)
    assert TicketField.QUOTA_PERIOD not in cbor2.loads(parse_ticket(text).sign1.payload)[
        CLAIM_TICKET]
    assert verify_ticket(text, trust).quota_period == "2026-12"


@pytest.mark.parametrize("compress", [True, False])
def test_compression_round_trip(issuer_key: SignerKey, trust: TrustList, compress: bool) -> None:
    text = issue_ticket(typical_ticket(), issuer_key, compress=compress)
    assert parse_ticket(text).compressed is compress
    assert verify_ticket(text, trust) == typical_ticket()


def test_zlib_bomb_refused(issuer_key: SignerKey) -> None:
    bomb = zlib.compress(b"\xd2" + b"\x00" * 100_000)
    with pytest.raises(TicketFormatError, match="more than a QR code"):
        parse_ticket(PREFIX + b45encode(bomb))
    with pytest.raises(TicketFormatError, match="truncated"):
        parse_ticket(PREFIX + b45encode(zlib.compress(b"\xd2abc")[:-3]))


def test_typical_ticket_fits_version_12_level_q(ticket_text: str) -> None:
    qr = segno.make(ticket_text, error="q", boost_error=False)
    assert qr.mode == "alphanumeric"
    assert qr.error == "Q"
    assert int(qr.version) <= 12
    assert int(make_qr(ticket_text).version) <= 12


def test_oversized_ticket_refused_by_qr(issuer_key: SignerKey) -> None:
    big = issue_ticket(
        typical_ticket(buyer="府谷县鑫源兰炭有限责任公司第二分公司",
                       destination="山西省忻州市保德县东关镇"),
        issuer_key,
    )
    with pytest.raises(TicketTooLargeError, match="version 1[3-9]"):
        make_qr(big)
    assert render_qr(big, "png", max_version=None).startswith(b"\x89PNG")


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_render_formats(ticket_text: str, fmt: str, magic: bytes) -> None:
    assert render_qr(ticket_text, fmt).startswith(magic)


def test_validity_window(ticket_text: str, trust: TrustList) -> None:
    verify_ticket(ticket_text, trust, now=T0)
    verify_ticket(ticket_text, trust, now=T0 + timedelta(hours=48) - timedelta(seconds=1))
    with pytest.raises(TicketNotYetValidError):
        verify_ticket(ticket_text, trust, now=T0 - timedelta(seconds=1))
    with pytest.raises(TicketExpiredError):
        verify_ticket(ticket_text, trust, now=T0 + timedelta(hours=48))


def test_altered_payload_rejected(ticket_text: str, trust: TrustList) -> None:
    def change_plate(parts: list) -> None:
        claims = cbor2.loads(parts[2])
        claims[CLAIM_TICKET][TicketField.PLATE] = "陕K8A3B3"
        parts[2] = cbor2.dumps(claims, canonical=True)

    with pytest.raises(TicketSignatureError):
        verify_ticket(reencode(ticket_text, change_plate), trust)


def test_altered_signature_rejected(ticket_text: str, trust: TrustList) -> None:
    def flip(parts: list) -> None:
        parts[3] = bytes([parts[3][0] ^ 1]) + parts[3][1:]

    with pytest.raises(TicketSignatureError):
        verify_ticket(reencode(ticket_text, flip), trust)


def test_altered_tag_rejected(ticket_text: str, trust: TrustList) -> None:
    item = cbor2.loads(b45decode(ticket_text[4:]))
    forged = PREFIX + b45encode(cbor2.dumps(cbor2.CBORTag(998, item.value)))
    with pytest.raises(TicketFormatError, match="tag 998"):
        verify_ticket(forged, trust)


@pytest.mark.parametrize(
    ("protected", "unprotected", "fragment"),
    [
        ({HEADER_ALG: -7, HEADER_KID: None}, {}, "not EdDSA"),
        ({HEADER_KID: None}, {HEADER_ALG: ALG_EDDSA}, "alg' must be in the protected"),
        ({HEADER_ALG: ALG_EDDSA}, {HEADER_KID: None}, "kid' must be in the protected"),
        ({HEADER_ALG: ALG_EDDSA, HEADER_KID: None}, {99: 1}, "unprotected header must be empty"),
        ({HEADER_ALG: ALG_EDDSA, HEADER_KID: None, 3: 0}, {}, None),  # signed but extra header
    ],
)
def test_protected_header_rules(
    issuer_key: SignerKey, trust: TrustList, protected: dict, unprotected: dict,
    fragment: str | None,
) -> None:
    def fill(h: dict) -> dict:
        return {k: (issuer_key.key_id if v is None else v) for k, v in h.items()}

    cose = sign1(encode_claims(typical_ticket()), issuer_key.sign,
                 protected=fill(protected), unprotected=fill(unprotected))
    text = PREFIX + b45encode(cose)
    if fragment is None:
        # extra protected headers are covered by the signature: accepted
        assert verify_ticket(text, trust) == typical_ticket()
    else:
        with pytest.raises(CoseError, match=fragment):
            verify_ticket(text, trust)


def test_protected_header_swapped_after_signing_rejected(
    ticket_text: str, trust: TrustList
) -> None:
    def add_header(parts: list) -> None:
        header = cbor2.loads(parts[0])
        header[3] = 0
        parts[0] = cbor2.dumps(header, canonical=True)

    with pytest.raises(TicketSignatureError):
        verify_ticket(reencode(ticket_text, add_header), trust)


def test_non_deterministic_claims_rejected(issuer_key: SignerKey, trust: TrustList) -> None:
    claims = cbor2.loads(encode_claims(typical_ticket()))
    reordered = dict(reversed(list(claims.items())))
    cose = sign1(cbor2.dumps(reordered), issuer_key.sign,
                 protected={HEADER_ALG: ALG_EDDSA, HEADER_KID: issuer_key.key_id})
    with pytest.raises(TicketFormatError, match="deterministic"):
        verify_ticket(PREFIX + b45encode(cose), trust)


def test_unknown_kid_and_wrong_issuer(ticket_text: str, issuer_key: SignerKey) -> None:
    other = SignerKey("E610821002", bytes(range(1, 33)))
    with pytest.raises(UnknownIssuerError, match="no issuer key"):
        verify_ticket(ticket_text, TrustList.single(other.verifier))
    # right key, but registered to another enterprise
    with pytest.raises(UnknownIssuerError, match="belongs to"):
        verify_ticket(ticket_text, TrustList.single(issuer_key.verifier, issuer="E999"))


def test_signed_by_impostor_with_same_kid_rejected(trust: TrustList) -> None:
    impostor = SignerKey("impostor", bytes(32))
    cose = sign1(encode_claims(typical_ticket()), impostor.sign,
                 protected={HEADER_ALG: ALG_EDDSA, HEADER_KID: trust.keys[0].key.key_id})
    with pytest.raises(TicketSignatureError):
        verify_ticket(PREFIX + b45encode(cose), trust)


@pytest.mark.parametrize(
    "text",
    ["", "CT1:", "CT2:BB8", "HC1:6BF", "ct1:BB8", "CT1:BB8", "CT1:" + "A" * 5000, "CT1:bb8"],
)
def test_malformed_texts(text: str, trust: TrustList) -> None:
    with pytest.raises(TicketFormatError):
        verify_ticket(text, trust)


def test_ticket_field_validation() -> None:
    with pytest.raises(TicketFormatError, match="ticket id"):
        typical_ticket(ticket_id="T 1")
    with pytest.raises(TicketFormatError, match="planned net"):
        typical_ticket(planned_net_kg=0)
    with pytest.raises(TicketFormatError, match="quota period"):
        typical_ticket(quota_period="2026-13")
    with pytest.raises(TicketFormatError, match="not after"):
        typical_ticket(valid_to=T0)
    with pytest.raises(TicketFormatError, match="timezone"):
        typical_ticket(issued_at=T0.replace(tzinfo=None))
    with pytest.raises(TicketFormatError, match="control"):
        typical_ticket(buyer="a\nb")


def test_not_a_sign1_payload(issuer_key: SignerKey, trust: TrustList) -> None:
    cose = Sign1(b"", {}, b"x", b"s" * 64).encode()
    with pytest.raises(CoseError):
        verify_ticket(PREFIX + b45encode(cose), trust)

