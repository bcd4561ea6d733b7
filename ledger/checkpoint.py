"""C2SP tlog-checkpoint and tlog-cosignature (Ed25519, ``cosignature/v1``).

Checkpoint body (https://c2sp.org/tlog-checkpoint)::

    coalgate/<site_id>
    <tree size, decimal>
    <root hash, base64>
    [extension lines]

It is published as a signed note from the site key. A witness (the central) checks that a new
checkpoint is consistent with the last one it saw, then adds a cosignature line
(https://c2sp.org/tlog-cosignature): key id ``SHA-256(name || 0x0A || 0x04 || pub)[:4]``,
signature bytes ``timestamp (u64 big-endian) || Ed25519(msg)`` where
``msg = "cosignature/v1\\ntime <timestamp>\\n" || checkpoint body``.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from ledger.errors import CheckpointError, NoteError
from ledger.keys import SignerKey, VerifierKey, key_id_for
from ledger.merkle import HASH_SIZE
from ledger.note import open_note, parse_note, sign_note, signature_line

__all__ = [
    "ALG_COSIGNATURE_V1",
    "Checkpoint",
    "origin_for_site",
    "sign_checkpoint",
    "open_checkpoint",
    "cosign_checkpoint",
    "verify_cosignature",
    "cosignature_key_id",
]

ALG_COSIGNATURE_V1 = 0x04
_SIZE_RE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


def origin_for_site(site_id: str) -> str:
    return f"coalgate/{site_id}"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("checkpoint origin must be one non-empty line")
        if self.size < 0:
            raise CheckpointError(f"checkpoint size {self.size} is negative")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise CheckpointError("checkpoint extension lines must be non-empty single lines")

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint has {len(lines)} lines; need origin, size and root hash"
            )
        origin, size_text, root_text, *ext = lines
        if not _SIZE_RE.match(size_text):
            raise CheckpointError(f"checkpoint line 2: size {size_text!r} is not a decimal number")
        try:
            root_hash = base64.b64decode(root_text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise CheckpointError(f"checkpoint line 3: root {root_text!r} is not base64") from None
        return cls(origin, int(size_text), root_hash, tuple(ext))


def sign_checkpoint(cp: Checkpoint, signer: SignerKey) -> str:
    return sign_note(cp.to_text(), [signer])


def open_checkpoint(note: str, verifier: VerifierKey) -> Checkpoint:
    """Verify the site's signature on a checkpoint note and parse its body."""
    try:
        opened = open_note(note, [verifier])
    except NoteError as exc:
        raise CheckpointError(f"checkpoint note: {exc}") from None
    return Checkpoint.from_text(opened.text)


def cosignature_key_id(witness: VerifierKey) -> bytes:
    return key_id_for(witness.name, ALG_COSIGNATURE_V1, witness.public)


def _cosigned_message(timestamp: int, body: str) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode("utf-8")


def cosign_checkpoint(note: str, witness_signer: SignerKey, timestamp: int) -> str:
    """Add the witness's tlog-cosignature line. The caller has already checked consistency."""
    if not 0 <= timestamp < 2**64:
        raise CheckpointError(f"cosignature timestamp {timestamp} is out of range")
    try:
        text, _ = parse_note(note)
    except NoteError as exc:
        raise CheckpointError(f"checkpoint note: {exc}") from None
    Checkpoint.from_text(text)
    sig = witness_signer.sign(_cosigned_message(timestamp, text))
    key_id = cosignature_key_id(witness_signer.verifier)
    return note + signature_line(witness_signer.name, key_id, struct.pack(">Q", timestamp) + sig)


def verify_cosignature(note: str, witness_verifier: VerifierKey) -> int:
    """Return the timestamp of the witness's valid cosignature; raise if none verifies."""
    try:
        text, sigs = parse_note(note)
    except NoteError as exc:
        raise CheckpointError(f"checkpoint note: {exc}") from None
    key_id = cosignature_key_id(witness_verifier)
    for s in sigs:
        if s.name != witness_verifier.name or s.key_id != key_id:
            continue
        if len(s.sig) != 8 + 64:
            raise CheckpointError(f"cosignature by {s.name} has the wrong length")
        (timestamp,) = struct.unpack(">Q", s.sig[:8])
        if witness_verifier.verify(_cosigned_message(timestamp, text), s.sig[8:]):
            return int(timestamp)
        raise CheckpointError(
            f"cosignature by witness {s.name} does not verify (time {timestamp})"
        )
    raise CheckpointError(f"checkpoint has no cosignature from witness {witness_verifier.name}")
