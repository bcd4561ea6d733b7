"""One error tree for the ledger: the library raises these, the CLI chooses the words.

Every message says what is wrong, where (seq, line, file) and, where it can, how to fix it.
"""

from __future__ import annotations

__all__ = [
    "LedgerError",
    "KeyFormatError",
    "KeyPermissionError",
    "NoteError",
    "EntryError",
    "SignatureError",
    "ChainError",
    "ProofError",
    "CheckpointError",
    "StoreError",
]


class LedgerError(Exception):
    """Root of every error ``ledger`` raises on purpose."""


class KeyFormatError(LedgerError):
    """A key's text form is malformed: wrong fields, wrong length, wrong key id."""


class KeyPermissionError(LedgerError):
    """A signer key file is readable by group or others, or would be overwritten."""


class NoteError(LedgerError):
    """A signed note is malformed, or a known key's signature on it does not verify."""


class EntryError(LedgerError):
    """An entry has bad fields, is not canonical JCS, or its body is not allowed."""


class SignatureError(LedgerError):
    """An entry's Ed25519 signature does not verify with the site's key."""


class ChainError(LedgerError):
    """The log's order is broken: a seq gap, a wrong ``prev`` or a wrong site."""


class ProofError(LedgerError):
    """An inclusion or consistency proof is malformed or does not verify."""


class CheckpointError(LedgerError):
    """A checkpoint is malformed, badly signed, or inconsistent with the log."""


class StoreError(LedgerError):
    """The SQLite store cannot be opened or used as asked."""
