"""COSE_Sign1 against the COSE working group vectors in ../shared/testvectors/cose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ledger.cose import (
    ALG_EDDSA,
    ALG_ES256,
    HEADER_ALG,
    HEADER_CONTENT_TYPE,
    HEADER_KID,
    Sign1,
    sig_structure,
    sign1,
    verify_sign1,
)
from ledger.ticket_errors import CoseError, TicketError, TicketSignatureError
from tests.tickets.conftest import shared_dir

COSE_DIR = shared_dir() / "testvectors" / "cose"


def load(name: str) -> dict[str, Any]:
    return json.loads((COSE_DIR / name).read_text())


def b64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def es256_verifier(vector: dict[str, Any]):
    key = vector["input"]["sign0"]["key"]
    x = int.from_bytes(b64url(key["x"]), "big")
    y = int.from_bytes(b64url(key["y"]), "big")
    public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()

    def verify(data: bytes, sig: bytes) -> bool:
        if len(sig) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    return verify


def test_vectors_present() -> None:
    names = sorted(p.name for p in COSE_DIR.glob("*.json"))
    assert "eddsa-sig-01.json" in names
    assert len([n for n in names if n.startswith("sign-fail")]) >= 6


def test_eddsa_vector_reproduced_exactly() -> None:
    v = load("eddsa-sig-01.json")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["input"]["sign0"]["key"]["d_hex"]))
    payload = v["input"]["plaintext"].encode()
    out = sign1(
        payload,
        key.sign,
        protected={HEADER_ALG: ALG_EDDSA, HEADER_CONTENT_TYPE: 0},
        unprotected={HEADER_KID: b"11"},
    )
    assert out.hex().upper() == v["output"]["cbor"]
    msg = Sign1.decode(out)
    assert msg.to_be_signed().hex().upper() == v["intermediates"]["ToBeSign_hex"]
    assert sig_structure(msg.protected, payload).hex().upper() == v["intermediates"]["ToBeSign_hex"]
    public = key.public_key()

    def verify(data: bytes, sig: bytes) -> bool:
        try:
            public.verify(sig, data)
        except InvalidSignature:
            return False
        return True

    verify_sign1(msg, ALG_EDDSA, verify)
    assert msg.kid == b"11" and msg.alg == ALG_EDDSA


@pytest.mark.parametrize("name", ["sign-pass-01.json", "sign-pass-02.json", "sign-pass-03.json"])
def test_pass_vectors_verify(name: str) -> None:
    v = load(name)
    msg = Sign1.decode(bytes.fromhex(v["output"]["cbor"]))
    aad = bytes.fromhex(v["input"]["sign0"].get("external", ""))
    assert msg.to_be_signed(aad).hex().upper() == v["intermediates"]["ToBeSign_hex"]
    verify_sign1(msg, ALG_ES256, es256_verifier(v), external_aad=aad)


FAIL_VECTORS = {
    "sign-fail-01.json": CoseError,  # wrong CBOR tag (998)
    "sign-fail-02.json": TicketSignatureError,  # payload changed
    "sign-fail-03.json": CoseError,  # alg changed to -999
    "sign-fail-04.json": CoseError,  # alg changed to "unknown"
    "sign-fail-06.json": TicketSignatureError,  # protected attribute added
    "sign-fail-07.json": TicketSignatureError,  # protected attribute removed
}


@pytest.mark.parametrize("name", sorted(FAIL_VECTORS))
def test_fail_vectors_rejected(name: str) -> None:
    v = load(name)
    assert v["fail"] is True
    with pytest.raises(FAIL_VECTORS[name]):
        msg = Sign1.decode(bytes.fromhex(v["output"]["cbor"]))
        verify_sign1(msg, ALG_ES256, es256_verifier(v))


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        (cbor2.CBORTag(18, [b"", {}, b"x"]), "array of 4"),
        ([b"", {}, b"x", b"s", b"extra"], "array of 4"),
        ({"not": "an array"}, "array of 4"),
        ([b"\xa1\x01", {}, b"x", b"s"], "protected header"),  # truncated map
        ([b"\x80", {}, b"x", b"s"], "expected a map"),
        (["text", {}, b"x", b"s"], "byte string"),
        ([b"", [], b"x", b"s"], "expected a map"),
        ([b"", {}, None, b"s"], "detached"),
        ([b"", {}, b"x", "sig"], "signature must be"),
        ([b"\xa1\x01\x26", {1: -7}, b"x", b"s"], "both"),
        ([b"\xa1\x02\x81\x63abc", {}, b"x", b"s"], "critical"),
        ([b"", {2: [1]}, b"x", b"s"], "crit"),
    ],
)
def test_structure_rejections(item: object, fragment: str) -> None:
    with pytest.raises(CoseError, match=fragment):
        Sign1.decode(cbor2.dumps(item))


def test_trailing_bytes_and_duplicates_rejected() -> None:
    good = cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"x", b"s"]))
    Sign1.decode(good)
    with pytest.raises(CoseError, match="unexpected byte"):
        Sign1.decode(good + b"\x00")
    # protected header {1: -8, 1: -7}: duplicate label
    with pytest.raises(CoseError, match="Duplicate|duplicate"):
        Sign1.decode(cbor2.dumps([b"\xa2\x01\x27\x01\x26", {}, b"x", b"s"]))


def test_errors_are_ticket_errors() -> None:
    assert issubclass(CoseError, TicketError) and issubclass(TicketSignatureError, TicketError)
    assert Path(COSE_DIR).is_dir()
