#!/usr/bin/env python3
"""Re-verify a ``coalgate ledger export`` file with nothing but Python and ``cryptography``.

This script deliberately imports nothing from coalgate: it is the proof that an outsider
(energy bureau, court, buyer) can audit a site's ledger on their own. The format is described
in docs/ledger.md. Usage:

    python3 scripts/verify_export.py EXPORT.jsonl --key 'mine-a+1a2b3c4d+AX...'

Exit status 0 when every entry and checkpoint verifies; 1 with the first failure otherwise.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZERO_HASH = bytes(32)
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
FIELDS = ["body", "kind", "prev", "seq", "site", "ts", "v"]


class Bad(Exception):
    """The export does not verify; the message says where and why."""


# ------------------------------------------------------------------ keys (C2SP signed-note)


def parse_verifier(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """``name+keyid+base64(0x01 || pubkey)`` → (name, key id, public key)."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise Bad("verifier key must look like 'name+8hexdigits+base64'")
    name, hex_id, b64 = parts
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise Bad("verifier key data is not base64") from None
    if len(raw) != 33 or raw[0] != 0x01:
        raise Bad("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != hex_id:
        raise Bad(f"verifier key id {hex_id} does not match the key (expected {key_id.hex()})")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def ed25519_ok(key: Ed25519PublicKey, msg: bytes, sig: bytes) -> bool:
    try:
        key.verify(sig, msg)
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------- RFC 8785 canonical JSON (JCS)


def jcs(value: Any) -> str:
    """RFC 8785 for the values a ledger entry may hold (no floats are allowed in entries)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise Bad(f"integer {value} is outside the I-JSON safe range")
        return str(value)
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code unit order
        return "{" + ",".join(jcs_string(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise Bad(f"{type(value).__name__} values are not allowed in ledger entries")


_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
          "\t": "\\t"}


def jcs_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def no_float(text: str) -> Any:
    raise Bad(f"number {text} is not an integer")


# ----------------------------------------------------------------------- RFC 6962 Merkle


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes], start: int, end: int) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash of leaves[start:end] (leaves are entry hashes)."""
    n = end - start
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[start]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves, start, start + k), mth(leaves, start + k, end))


# ---------------------------------------------------------------------------------- audit


def check_entry(line_no: int, obj: Any, key: Ed25519PublicKey, seq: int, prev: bytes,
                site: str | None) -> tuple[bytes, str]:
    where = f"line {line_no} (seq {seq})"
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str)
                                            for k in ("leaf", "hash", "sig")):
        raise Bad(f"{where}: expected an object with string fields leaf, hash, sig")
    leaf = obj["leaf"].encode("utf-8")
    digest = hashlib.sha256(b"\x00" + leaf).digest()
    if base64.b64encode(digest).decode() != obj["hash"]:
        raise Bad(f"{where}: hash is not SHA-256(0x00 || leaf)")
    try:
        entry = json.loads(obj["leaf"], parse_float=no_float)
    except json.JSONDecodeError as exc:
        raise Bad(f"{where}: leaf is not JSON ({exc.msg})") from None
    if not isinstance(entry, dict) or sorted(entry) != FIELDS:
        raise Bad(f"{where}: leaf must have exactly the fields {', '.join(FIELDS)}")
    if jcs(entry) != obj["leaf"]:
        raise Bad(f"{where}: leaf is not in RFC 8785 canonical form")
    if entry["v"] != 1:
        raise Bad(f"{where}: unknown entry version {entry['v']!r}")
    if entry["seq"] != seq:
        raise Bad(f"{where}: found seq {entry['seq']!r}; entries must run 0, 1, 2… with no gap")
    if site is not None and entry["site"] != site:
        raise Bad(f"{where}: site {entry['site']!r} differs from {site!r}")
    if not isinstance(entry["ts"], str) or not TS_RE.match(entry["ts"]):
        raise Bad(f"{where}: ts {entry['ts']!r} is not RFC 3339 UTC ('…Z')")
    if not isinstance(entry["body"], dict) or not isinstance(entry["kind"], str):
        raise Bad(f"{where}: kind must be a string and body an object")
    if entry["prev"] != base64.b64encode(prev).decode():
        raise Bad(f"{where}: prev is not the hash of the previous entry (chain broken)")
    try:
        sig = base64.b64decode(obj["sig"], validate=True)
    except binascii.Error:
        raise Bad(f"{where}: sig is not base64") from None
    if not ed25519_ok(key, leaf, sig):
        raise Bad(f"{where}: Ed25519 signature does not verify with the site key")
    return digest, entry["site"]


def check_checkpoint(line_no: int, note: Any, name: str, key_id: bytes, key: Ed25519PublicKey,
                     site: str | None, leaves: list[bytes]) -> int:
    where = f"line {line_no} (checkpoint)"
    if not isinstance(note, str):
        raise Bad(f"{where}: 'checkpoint' must be a string (a C2SP signed note)")
    split = note.rfind("\n\n")
    if split < 0:
        raise Bad(f"{where}: not a signed note (no blank line before signatures)")
    text, sig_lines = note[: split + 1], note[split + 2 :].splitlines()
    verified = False
    for sl in sig_lines:
        if not sl.startswith("\u2014 "):
            raise Bad(f"{where}: malformed signature line {sl[:30]!r}")
        sname, _, b64 = sl[2:].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise Bad(f"{where}: signature is not base64") from None
        if sname != name or raw[:4] != key_id:
            continue  # another key (e.g. a witness cosignature): not ours to check
        if not ed25519_ok(key, text.encode("utf-8"), raw[4:]):
            raise Bad(f"{where}: the site's signature on the checkpoint does not verify")
        verified = True
    if not verified:
        raise Bad(f"{where}: no signature by the site key {name}")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise Bad(f"{where}: checkpoint body must be origin, size, root")
    origin, size, root_b64 = lines[0], int(lines[1]), lines[2]
    if site is not None and origin != f"coalgate/{site}":
        raise Bad(f"{where}: origin {origin!r} is not 'coalgate/{site}'")
    if size > len(leaves):
        raise Bad(f"{where}: signed at size {size} but the export holds {len(leaves)} entries "
                  "— entries were removed")
    if base64.b64encode(mth(leaves, 0, size)).decode() != root_b64:
        raise Bad(f"{where}: root for size {size} does not match the entries — the log was "
                  "rewritten after this checkpoint was signed")
    return size


def audit(path: Path, key_text: str, site: str | None) -> str:
    name, key_id, key = parse_verifier(key_text)
    leaves: list[bytes] = []
    prev = ZERO_HASH
    checkpoints = 0
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                obj = json.loads(line, parse_float=no_float)
            except json.JSONDecodeError as exc:
                raise Bad(f"line {line_no}: not JSON ({exc.msg})") from None
            if isinstance(obj, dict) and "checkpoint" in obj:
                check_checkpoint(line_no, obj["checkpoint"], name, key_id, key, site, leaves)
                checkpoints += 1
                continue
            if checkpoints:
                raise Bad(f"line {line_no}: entry after the checkpoints; the export is reordered")
            prev, entry_site = check_entry(line_no, obj, key, len(leaves), prev, site)
            site = entry_site
            leaves.append(prev)
    root = base64.b64encode(mth(leaves, 0, len(leaves))).decode()
    summary = f"OK: {len(leaves)} entries and {checkpoints} checkpoints verify; root {root}"
    if not checkpoints:
        summary += "\nwarning: no checkpoint in the export, so removal of the newest entries " \
                   "cannot be detected"
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="file written by 'coalgate ledger export'")
    parser.add_argument("--key", required=True,
                        help="the site's verifier key text, or a file holding it")
    parser.add_argument("--site", help="expected site id (default: the first entry's)")
    args = parser.parse_args()
    key_text = args.key
    if Path(key_text).is_file():
        key_text = Path(key_text).read_text(encoding="utf-8")
    try:
        print(audit(args.export, key_text, args.site))
    except Bad as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        print(f"FAILED: cannot read {args.export}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
