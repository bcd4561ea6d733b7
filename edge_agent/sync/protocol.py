"""The gate ↔ central sync protocol over MQTT (DESIGN.md §4; docs/protocol.md).

Pure: topic names, and encoding/decoding of the JSON messages, each with a version ``v``.
Both sides import this module, so the edge and the central cannot disagree on a field name.
Decoders raise ``ProtocolError`` naming the field and what was expected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.entry import SignedEntry
from ledger.errors import EntryError

__all__ = [
    "gate_situation",
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "ProtocolError",
    "topic",
    "site_from_topic",
    "LedgerBatch",
    "Ack",
    "ResendRequest",
    "CheckpointMessage",
    "Status",
    "decode_json",
    "MAX_PAYLOAD",
]

PROTOCOL_VERSION = 1
TOPIC_ROOT = "coalgate/v1/sites"
# Larger payloads are refused before JSON parsing (a batch of 500 entries is ~0.5 MB).
MAX_PAYLOAD = 8 * 1024 * 1024
CHANNELS = ("ledger", "checkpoint", "live", "status", "ack", "tickets", "cmd")
_TOPIC_RE = re.compile(r"^coalgate/v1/sites/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/([a-z]+)$")


class ProtocolError(ValueError):
    """A sync message is malformed: not JSON, wrong version, a missing or mistyped field."""


def topic(site: str, channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    return f"{TOPIC_ROOT}/{site}/{channel}"


def site_from_topic(name: str) -> tuple[str, str]:
    """``coalgate/v1/sites/<site>/<channel>`` → (site, channel)."""
    m = _TOPIC_RE.match(name)
    if not m or m.group(2) not in CHANNELS:
        raise ProtocolError(f"topic {name!r} is not coalgate/v1/sites/<site>/<channel>")
    return m.group(1), m.group(2)


def decode_json(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what}: payload is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: payload must be a JSON object, got {type(obj).__name__}")
    v = obj.get("v")
    if v != PROTOCOL_VERSION or isinstance(v, bool):
        raise ProtocolError(f"{what}: version v={v!r} is not supported (expected 1)")
    return obj


def _int(obj: dict[str, Any], key: str, what: str, *, minimum: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"{what}: '{key}' must be an integer ≥ {minimum}, got {value!r}")
    return value


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{what}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class LedgerBatch:
    """Edge → central on ``ledger``: consecutive entries starting at ``start``."""

    site: str
    start: int
    entries: tuple[SignedEntry, ...]

    def encode(self) -> bytes:
        return _dumps(
            {
                "v": PROTOCOL_VERSION,
                "site": self.site,
                "from": self.start,
                "entries": [se.to_wire() for se in self.entries],
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> LedgerBatch:
        what = "ledger batch"
        obj = decode_json(payload, what)
        site = _str(obj, "site", what)
        start = _int(obj, "from", what, minimum=0)
        raw = obj.get("entries")
        if not isinstance(raw, list) or not raw:
            raise ProtocolError(f"{what}: 'entries' must be a non-empty list")
        entries = []
        for i, item in enumerate(raw):
            try:
                entries.append(SignedEntry.from_wire(item))
            except EntryError as exc:
                raise ProtocolError(f"{what}: entries[{i}] (seq {start + i}): {exc}") from None
        return cls(site, start, tuple(entries))


@dataclass(frozen=True)
class Ack:
    """Central → edge on ``ack``: highest contiguous seq stored durably (-1: none yet)."""

    seq: int
    checkpoint: str | None = None

    def encode(self) -> bytes:
        return _dumps({"v": PROTOCOL_VERSION, "seq": self.seq, "checkpoint": self.checkpoint})

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        what = "ack"
        obj = decode_json(payload, what)
        cp = obj.get("checkpoint")
        if cp is not None and not isinstance(cp, str):
            raise ProtocolError(f"{what}: 'checkpoint' must be a string or null")
        return cls(_int(obj, "seq", what, minimum=-1), cp)


@dataclass(frozen=True)
class ResendRequest:
    """Central → edge on ``cmd``: publish the ledger again from ``start``."""

    start: int

    def encode(self) -> bytes:
        return _dumps({"v": PROTOCOL_VERSION, "cmd": "resend", "from": self.start})

    @classmethod
    def decode(cls, obj: dict[str, Any]) -> ResendRequest:
        return cls(_int(obj, "from", "cmd resend", minimum=0))


@dataclass(frozen=True)
class CheckpointMessage:
    """Edge → central on ``checkpoint``: the site's signed checkpoint note."""

    site: str
    note: str

    def encode(self) -> bytes:
        return _dumps({"v": PROTOCOL_VERSION, "site": self.site, "note": self.note})

    @classmethod
    def decode(cls, payload: bytes) -> CheckpointMessage:
        what = "checkpoint message"
        obj = decode_json(payload, what)
        return cls(_str(obj, "site", what), _str(obj, "note", what))


STATUS_MAX_BYTES = 2048
GATE_STATES = ("idle", "entering", "on_platform", "identify", "held", "released", "leaving",
               "recovering")


def _rfc3339(v: Any) -> str | None:
    """A short RFC 3339 UTC time string, or None (the heartbeat is decoded tolerantly)."""
    if not isinstance(v, str) or len(v) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return v if parsed.tzinfo is not None else None


def gate_situation(obj: Any) -> dict[str, Any] | None:
    """The ``gate`` object of a status heartbeat, bounded and typed: ``state`` (one of
    :data:`GATE_STATES`), ``last_weighing_ts`` and ``waiting_since`` (RFC 3339 or null).
    Anything else — unknown keys, wrong types, long strings — is dropped, never an error:
    a newer or odd gate must not stop its status from being stored."""
    if not isinstance(obj, dict):
        return None
    state = obj.get("state")
    return {
        "state": state if state in GATE_STATES else None,
        "last_weighing_ts": _rfc3339(obj.get("last_weighing_ts")),
        "waiting_since": _rfc3339(obj.get("waiting_since")),
    }


@dataclass(frozen=True)
class Status:
    """Edge → central on ``status`` (retained; the last will says offline). While online it is
    a heartbeat: republished every ``heartbeat_s`` and whenever the gate's situation changes."""

    state: str  # online | offline
    ts: str | None = None
    acked: int | None = None
    size: int | None = None
    gate: dict[str, Any] | None = None  # gate_situation(): phase, last weighing, waiting since

    def encode(self) -> bytes:
        obj: dict[str, Any] = {"v": PROTOCOL_VERSION, "state": self.state}
        if self.ts is not None:
            obj["ts"] = self.ts
        if self.acked is not None:
            obj["acked"] = self.acked
        if self.size is not None:
            obj["size"] = self.size
        if self.gate is not None:
            obj["gate"] = self.gate
        return _dumps(obj)

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        what = "status"
        if len(payload) > STATUS_MAX_BYTES:  # a few hundred bytes honestly; it is stored as is
            raise ProtocolError(f"{what}: payload of {len(payload)} bytes exceeds "
                                f"{STATUS_MAX_BYTES}")
        obj = decode_json(payload, what)
        state = obj.get("state")
        if state not in ("online", "offline"):
            raise ProtocolError(f"{what}: 'state' must be 'online' or 'offline', got {state!r}")
        ts = obj.get("ts")
        acked = obj.get("acked")
        size = obj.get("size")
        return cls(
            state,
            ts if isinstance(ts, str) else None,
            acked if isinstance(acked, int) and not isinstance(acked, bool) else None,
            size if isinstance(size, int) and not isinstance(size, bool) else None,
            gate_situation(obj.get("gate")),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.encode())
        return out
