"""C2SP signed-note Ed25519 keys (https://c2sp.org/signed-note).

Text forms (DESIGN.md §4):
  verifier  ``<name>+<8 hex key id>+base64(0x01 || 32-byte public key)``
  signer    ``PRIVATE+KEY+<name>+<8 hex key id>+base64(0x01 || 32-byte seed)``
The key id is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyFormatError, KeyPermissionError

__all__ = [
    "ALG_ED25519",
    "SignerKey",
    "VerifierKey",
    "key_id_for",
    "check_key_name",
    "write_signer_file",
    "read_signer_file",
    "read_verifier",
]

ALG_ED25519 = 0x01
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def key_id_for(name: str, alg: int, public: bytes) -> bytes:
    """``SHA-256(name || "\\n" || alg || public)[:4]`` — the C2SP key id."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def check_key_name(name: str) -> None:
    """A key name is non-empty UTF-8 with no '+', no whitespace and no control characters."""
    if not name:
        raise KeyFormatError("key name is empty; give a name such as 'mine-a.example'")
    if "+" in name or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise KeyFormatError(
            f"key name {name!r} contains '+', whitespace or a control character; "
            "use letters, digits, '.', '-', '/' or '_'"
        )


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise KeyFormatError(f"{what}: key data is not valid base64") from exc


def _parse_hex_id(text: str, what: str) -> bytes:
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise KeyFormatError(f"{what}: key id {text!r} must be 8 lowercase hex digits")
    return bytes.fromhex(text)


def _split_key_material(raw: bytes, what: str) -> bytes:
    if len(raw) != 33:
        raise KeyFormatError(
            f"{what}: key data is {len(raw)} bytes; an Ed25519 key is 33 bytes (0x01 + 32)"
        )
    if raw[0] != ALG_ED25519:
        raise KeyFormatError(
            f"{what}: key algorithm byte is 0x{raw[0]:02x}; only Ed25519 (0x01) is supported"
        )
    return raw[1:]


@dataclass(frozen=True)
class VerifierKey:
    """A public Ed25519 note-verifier key."""

    name: str
    public: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public) != 32:
            raise KeyFormatError(f"public key is {len(self.public)} bytes; Ed25519 needs 32")
        object.__setattr__(self, "key_id", key_id_for(self.name, ALG_ED25519, self.public))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public))

    @classmethod
    def from_text(cls, text: str) -> VerifierKey:
        text = text.strip()
        parts = text.split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise KeyFormatError(
                f"verifier key {text[:40]!r}: expected 'name+keyid+base64' (3 fields, "
                f"got {len(parts)})"
            )
        name, hex_id, b64 = parts
        check_key_name(name)
        want_id = _parse_hex_id(hex_id, f"verifier key {name!r}")
        public = _split_key_material(_b64decode(b64, f"verifier key {name!r}"),
                                     f"verifier key {name!r}")
        key = cls(name, public)
        if key.key_id != want_id:
            raise KeyFormatError(
                f"verifier key {name!r}: key id {hex_id} does not match the key "
                f"(expected {key.key_id.hex()}); the key text was altered or mis-copied"
            )
        return key

    def to_text(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{data}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        if len(sig) != 64:
            return False
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class SignerKey:
    """A private Ed25519 note-signer key. ``repr()`` never shows the seed."""

    name: str
    _seed: bytes = field(repr=False)
    key_id: bytes = field(init=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    _verifier: VerifierKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self._seed) != 32:
            raise KeyFormatError(f"signer seed is {len(self._seed)} bytes; Ed25519 needs 32")
        key = Ed25519PrivateKey.from_private_bytes(self._seed)
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        verifier = VerifierKey(self.name, public)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_verifier", verifier)
        object.__setattr__(self, "key_id", verifier.key_id)

    @classmethod
    def generate(cls, name: str) -> SignerKey:
        return cls(name, os.urandom(32))

    @classmethod
    def from_text(cls, text: str) -> SignerKey:
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise KeyFormatError(
                "signer key must start with 'PRIVATE+KEY+'; is this a verifier (public) key?"
            )
        parts = text[len(_PRIVATE_PREFIX):].split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError(
                "signer key: expected 'PRIVATE+KEY+name+keyid+base64' "
                f"({len(parts)} fields after the prefix, need 3)"
            )
        name, hex_id, b64 = parts
        check_key_name(name)
        want_id = _parse_hex_id(hex_id, f"signer key {name!r}")
        seed = _split_key_material(_b64decode(b64, f"signer key {name!r}"), f"signer key {name!r}")
        key = cls(name, seed)
        if key.key_id != want_id:
            raise KeyFormatError(
                f"signer key {name!r}: key id {hex_id} does not match the key "
                f"(expected {key.key_id.hex()}); the key file is damaged"
            )
        return key

    def to_text(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self._seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{data}"

    @property
    def verifier(self) -> VerifierKey:
        return self._verifier

    @property
    def public(self) -> bytes:
        return self._verifier.public

    @property
    def seed(self) -> bytes:
        """The raw 32-byte seed, for other signature schemes over the same key (cosignatures)."""
        return self._seed

    def sign(self, msg: bytes) -> bytes:
        return self._key.sign(msg)

    def __str__(self) -> str:
        return f"SignerKey({self.name}+{self.key_id.hex()})"


def write_signer_file(path: str | os.PathLike[str], key: SignerKey) -> None:
    """Create ``path`` with mode 0600 holding the signer key; never overwrite an existing file."""
    from ledger.private_file import write_private

    p = Path(path)
    try:
        write_private(p, key.to_text() + "\n", overwrite=False)
    except FileExistsError as exc:
        raise KeyPermissionError(
            f"{p}: already exists; refusing to overwrite a key file (choose another --out path)"
        ) from exc


def read_signer_file(path: str | os.PathLike[str]) -> SignerKey:
    """Read a signer key file, refusing one that group or others can read or write."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError as exc:
        raise KeyFormatError(f"{p}: signer key file not found") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyPermissionError(
            f"{p}: signer key file has mode {stat.S_IMODE(mode):04o}, readable by others; "
            f"run 'chmod 600 {p}' (and consider the key compromised if others could read it)"
        )
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFormatError(f"{p}: cannot read signer key file: {exc}") from exc
    try:
        return SignerKey.from_text(text)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{p}: {exc}") from None


def read_verifier(text_or_path: str | os.PathLike[str]) -> VerifierKey:
    """Parse a verifier key given as its text form or as the path of a file holding it."""
    s = os.fspath(text_or_path)
    p = Path(s)
    if "+" in s and not p.exists():
        return VerifierKey.from_text(s)
    if not p.exists():
        raise KeyFormatError(
            f"{s!r} is neither a verifier key ('name+keyid+base64') nor an existing file"
        )
    text = p.read_text("utf-8").strip()
    if text.startswith(_PRIVATE_PREFIX):
        raise KeyFormatError(f"{p}: holds a private signer key; pass the verifier (public) key")
    try:
        return VerifierKey.from_text(text)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{p}: {exc}") from None
