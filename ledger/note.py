"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
``— <key name> base64(4-byte key id || signature)``. Verifiers ignore signatures from keys
they do not know, and fail closed when a known key's signature does not verify.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import KeyFormatError, NoteError
from ledger.keys import SignerKey, VerifierKey, check_key_name

__all__ = ["Note", "NoteSignature", "sign_note", "open_note", "parse_note", "signature_line"]

_DASH = "\u2014 "  # an em dash and a space start every signature line
_MAX_SIGNATURES = 100


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key name, the 4-byte key id and the signature bytes after it."""

    name: str
    key_id: bytes
    sig: bytes


@dataclass(frozen=True)
class Note:
    text: str
    verified: tuple[str, ...]
    signatures: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        for ch in line:
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise NoteError(
                    f"note text line {lineno} contains control character U+{ord(ch):04X}"
                )


def signature_line(name: str, key_id: bytes, sig: bytes) -> str:
    return f"{_DASH}{name} {base64.b64encode(key_id + sig).decode('ascii')}\n"


def sign_note(text: str, signers: Sequence[SignerKey]) -> str:
    """Sign ``text`` (which must end in a newline) with each signer."""
    if not signers:
        raise NoteError("sign_note needs at least one signer key")
    _check_text(text)
    if "\n\n" + _DASH.rstrip() in "\n" + text:
        raise NoteError("note text must not contain a blank line followed by a '—' line")
    msg = text.encode("utf-8")
    lines = "".join(signature_line(s.name, s.key_id, s.sign(msg)) for s in signers)
    return text + "\n" + lines


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and its signature lines, checking the syntax only."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"note is not UTF-8 (byte {exc.start})") from None
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    _check_text(text)
    if not block.endswith("\n"):
        raise NoteError("malformed note: the last signature line does not end with a newline")
    sigs: list[NoteSignature] = []
    for i, line in enumerate(block[:-1].split("\n"), 1):
        where = f"signature line {i}"
        if not line.startswith(_DASH):
            raise NoteError(f"malformed note: {where} does not start with '— ': {line[:40]!r}")
        name, sep, b64 = line[len(_DASH) :].partition(" ")
        if not sep or " " in b64:
            raise NoteError(f"malformed note: {where} is not '— <name> <base64>'")
        try:
            check_key_name(name)
        except KeyFormatError as exc:
            raise NoteError(f"malformed note: {where}: {exc}") from None
        try:
            raw = base64.b64decode(b64.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise NoteError(f"malformed note: {where}: signature is not base64") from None
        if len(raw) < 5:
            raise NoteError(f"malformed note: {where}: signature is too short")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
        if len(sigs) > _MAX_SIGNATURES:
            raise NoteError(f"note has more than {_MAX_SIGNATURES} signatures")
    return text, sigs


def open_note(note: str | bytes, verifiers: Iterable[VerifierKey]) -> Note:
    """Verify a note: at least one known key signed it, and no known key's signature fails."""
    text, sigs = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    msg = text.encode("utf-8")
    verified: list[str] = []
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue  # unknown keys are ignored, as C2SP requires
        if not v.verify(msg, s.sig):
            raise NoteError(
                f"signature by known key {s.name} ({s.key_id.hex()}) does not verify: "
                "the note text was altered or the signature forged"
            )
        if s.name not in verified:
            verified.append(s.name)
    if not verified:
        names = ", ".join(sorted({s.name for s in sigs})) or "none"
        raise NoteError(f"note has no signature from a known key (signed by: {names})")
    return Note(text, tuple(verified), tuple(sigs))
