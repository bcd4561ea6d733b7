"""Ledger entries (DESIGN.md §4): canonical JSON leaves, leaf hashes, the ``prev`` chain.

The leaf bytes are the RFC 8785 (JCS) serialisation of
``{"v", "site", "seq", "ts", "kind", "body", "prev"}`` with ``prev`` in standard base64.
The entry hash is the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)`` and is the Merkle leaf.
Each leaf is signed with Ed25519 by the site key, over the leaf bytes themselves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from ledger.canonical import MAX_SAFE_INT, canonical_json, check_json_value
from ledger.errors import ChainError, EntryError, LedgerError, SignatureError
from ledger.keys import SignerKey, VerifierKey

__all__ = [
    "ZERO_HASH",
    "ENTRY_VERSION",
    "MAX_SAFE_INT",
    "Entry",
    "SignedEntry",
    "sign_entry",
    "verify_signed_entry",
    "format_ts",
    "parse_ts",
    "check_body",
    "parse_json_body",
]

ZERO_HASH = bytes(32)
ENTRY_VERSION = 1
_FIELDS = ("body", "kind", "prev", "seq", "site", "ts", "v")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$", re.ASCII)
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LEAF_PREFIX = b"\x00"


def format_ts(when: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and 'Z', e.g. ``2026-11-28T12:05:21.123Z``."""
    if when.tzinfo is None:
        raise EntryError("timestamp has no time zone; pass an aware datetime (UTC)")
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    """Parse an entry timestamp; only RFC 3339 UTC with a 'Z' suffix is accepted."""
    if not isinstance(text, str) or not _TS_RE.fullmatch(text):
        raise EntryError(
            f"ts {text!r} is not an RFC 3339 UTC time such as '2026-11-28T12:05:21.123Z'"
        )
    # The pattern fixes every field's position, so slice rather than strptime: this runs
    # several times per entry on the central's ingest path, and strptime was ~13 % of it.
    # datetime() still refuses impossible values (2026-02-30, 24:00:00, :60).
    frac = text[20:-1]
    try:
        return datetime(
            int(text[0:4]), int(text[5:7]), int(text[8:10]),
            int(text[11:13]), int(text[14:16]), int(text[17:19]),
            int((frac + "000000")[:6]) if frac else 0,
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise EntryError(f"ts {text!r} is not a valid calendar time: {exc}") from None


def check_body(value: Any, path: str = "body") -> None:
    """Bodies are JSON objects of strings, integers, booleans, null, lists and objects.

    Floats are refused: weights are integer kilograms, and floats do not survive every
    JSON reader byte for byte. The check is the canonicaliser's own (ledger.canonical), so
    what passes here is exactly what it will write (lone surrogates are refused when it does).
    """
    check_json_value(value, path)


def parse_json_body(text: str) -> dict[str, Any]:
    """Parse a body given as JSON text (CLI, integrations): an object, integers only."""
    try:
        obj = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise EntryError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(obj, dict):
        raise EntryError(f"body must be a JSON object ({{...}}), got {type(obj).__name__}")
    check_body(obj)
    return obj


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EntryError(f"{what} must be a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise EntryError(f"{what} {text[:60]!r} is not valid base64") from None
    if _b64(raw) != text:
        raise EntryError(f"{what} {text[:60]!r} is not canonical base64")
    return raw


@dataclass(frozen=True)
class Entry:
    """One ledger event. Construction validates every field.

    Like every frozen value here, an Entry must not be changed afterwards — that includes its
    ``body`` dict: the canonical leaf is computed once, when first asked for, and kept.
    """

    site: str
    seq: int
    ts: str
    kind: str
    body: dict[str, Any]
    prev: bytes
    v: int = ENTRY_VERSION
    _leaf: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.v != ENTRY_VERSION or isinstance(self.v, bool):
            raise EntryError(f"entry version {self.v!r} is not supported (expected 1)")
        if not isinstance(self.site, str) or not _SITE_RE.match(self.site):
            raise EntryError(
                f"site {self.site!r} must be 1–64 letters, digits, '.', '_' or '-'"
            )
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise EntryError(f"seq {self.seq!r} must be a non-negative integer")
        if self.seq > MAX_SAFE_INT:
            raise EntryError(f"seq {self.seq} is beyond 2^53−1")
        parse_ts(self.ts)
        if not isinstance(self.kind, str) or not _KIND_RE.match(self.kind):
            raise EntryError(
                f"kind {self.kind!r} must be lower-case letters, digits and '_' "
                "(e.g. 'weighing', 'alarm')"
            )
        if not isinstance(self.body, dict):
            raise EntryError(f"body must be a JSON object, got {type(self.body).__name__}")
        check_body(self.body)
        if not isinstance(self.prev, bytes) or len(self.prev) != 32:
            raise EntryError("prev must be 32 bytes (the previous entry hash)")
        if self.seq == 0 and self.prev != ZERO_HASH:
            raise ChainError("seq 0: prev must be 32 zero bytes")

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "site": self.site,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "body": self.body,
            "prev": _b64(self.prev),
        }

    def leaf_bytes(self) -> bytes:
        """RFC 8785 canonical JSON of the entry — the exact bytes that are hashed and signed."""
        if self._leaf is not None:
            return self._leaf
        try:
            leaf = canonical_json(self.to_json_obj())
        except EntryError as exc:  # e.g. a lone surrogate, which check_body lets through
            raise EntryError(f"seq {self.seq}: cannot canonicalise entry: {exc}") from None
        object.__setattr__(self, "_leaf", leaf)
        return leaf

    def entry_hash(self) -> bytes:
        return hashlib.sha256(_LEAF_PREFIX + self.leaf_bytes()).digest()

    @classmethod
    def from_leaf(cls, leaf: bytes) -> Entry:
        """Parse leaf bytes, checking they are well formed and exactly canonical."""
        try:
            text = leaf.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EntryError(f"leaf is not UTF-8 (byte {exc.start})") from None
        # Parsed without a duplicate-key hook (a Python call per object, on the ingest hot path):
        # a duplicate collapses in the dict, so the canonical bytes of what was parsed cannot
        # equal the leaf and it is refused below. On any refusal the leaf is parsed again
        # strictly, so a duplicate key is reported as such and before anything else, as ever.
        entry: Entry | None = None
        problem: LedgerError | None = None
        try:
            entry = cls._from_obj(_loads_leaf(text, strict=False))
            if entry.leaf_bytes() == leaf:
                return entry
        except LedgerError as exc:
            problem = exc
        _loads_leaf(text, strict=True)
        if problem is not None:
            raise problem
        assert entry is not None
        raise EntryError(
            f"seq {entry.seq}: leaf is not in RFC 8785 canonical form "
            "(re-serialising gives different bytes)"
        )

    @classmethod
    def _from_obj(cls, obj: Any) -> Entry:
        if not isinstance(obj, dict):
            raise EntryError("leaf is not a JSON object")
        if tuple(sorted(obj)) != _FIELDS:
            missing = sorted(set(_FIELDS) - set(obj))
            extra = sorted(set(obj) - set(_FIELDS))
            raise EntryError(f"leaf fields wrong: missing {missing}, unexpected {extra}")
        return cls(
            v=obj["v"],
            site=obj["site"],
            seq=obj["seq"],
            ts=obj["ts"],
            kind=obj["kind"],
            body=obj["body"],
            prev=_unb64(obj["prev"], "prev"),
        )


def _loads_leaf(text: str, *, strict: bool) -> Any:
    """Parse leaf text; floats and NaN/Infinity are always refused, duplicates when strict."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates if strict else None,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise EntryError(f"leaf is not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise EntryError("leaf is nested too deeply to be an entry") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise EntryError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise EntryError(f"number {text} is not an integer; bodies hold integers only")


def _no_constant(text: str) -> Any:
    raise EntryError(f"{text} is not valid JSON")


@dataclass(frozen=True)
class SignedEntry:
    """Leaf bytes plus the site's Ed25519 signature over them."""

    leaf: bytes
    sig: bytes
    _hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hashlib.sha256(_LEAF_PREFIX + self.leaf).digest())

    @cached_property
    def entry(self) -> Entry:
        return Entry.from_leaf(self.leaf)

    @property
    def hash(self) -> bytes:
        return self._hash

    def to_wire(self) -> dict[str, str]:
        return {"leaf": self.leaf.decode("utf-8"), "hash": _b64(self.hash), "sig": _b64(self.sig)}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> SignedEntry:
        if not isinstance(obj, Mapping):
            raise EntryError("wire entry must be an object with 'leaf', 'hash' and 'sig'")
        for key in ("leaf", "hash", "sig"):
            if not isinstance(obj.get(key), str):
                raise EntryError(f"wire entry: '{key}' missing or not a string")
        se = cls(obj["leaf"].encode("utf-8"), _unb64(obj["sig"], "sig"))
        if _unb64(obj["hash"], "hash") != se.hash:
            raise EntryError("wire entry: 'hash' does not match SHA-256(0x00 || leaf)")
        return se


def sign_entry(entry: Entry, signer: SignerKey) -> SignedEntry:
    leaf = entry.leaf_bytes()
    return SignedEntry(leaf, signer.sign(leaf))


def verify_signed_entry(
    se: SignedEntry, verifier: VerifierKey, *, site: str, seq: int, prev: bytes
) -> Entry:
    """Check one entry in its place in the log; raise the specific error, or return it."""
    entry = Entry.from_leaf(se.leaf)
    if entry.site != site:
        raise ChainError(f"seq {entry.seq}: site is {entry.site!r}, expected {site!r}")
    if entry.seq != seq:
        raise ChainError(f"expected seq {seq}, found seq {entry.seq} (gap or reordering)")
    if entry.prev != prev:
        raise ChainError(
            f"seq {seq}: prev does not match the hash of seq {seq - 1} "
            "(an earlier entry was changed, removed or reordered)"
        )
    if not verifier.verify(se.leaf, se.sig):
        raise SignatureError(
            f"seq {seq}: Ed25519 signature does not verify with key {verifier.name} "
            f"({verifier.key_id.hex()}); the entry was altered or signed by another key"
        )
    return entry
