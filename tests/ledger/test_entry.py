"""Ledger entries: canonical leaves, hashes, signatures and the prev chain."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from ledger.entry import (
    ZERO_HASH,
    Entry,
    SignedEntry,
    format_ts,
    parse_ts,
    sign_entry,
    verify_signed_entry,
)
from ledger.errors import ChainError, EntryError, SignatureError
from ledger.keys import SignerKey

TS = "2026-11-28T12:00:00.000Z"


def _entry(**kw: object) -> Entry:
    fields: dict[str, object] = dict(
        site="mine-a", seq=0, ts=TS, kind="weighing", body={"gross_kg": 42000}, prev=ZERO_HASH
    )
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def test_leaf_is_jcs_and_hash_is_rfc6962_leaf_hash() -> None:
    e = _entry(body={"z": 1, "a": "煤", "m": [True, None]})
    leaf = e.leaf_bytes()
    assert leaf == (
        '{"body":{"a":"煤","m":[true,null],"z":1},"kind":"weighing",'
        '"prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","seq":0,"site":"mine-a",'
        '"ts":"2026-11-28T12:00:00.000Z","v":1}'
    ).encode()
    assert e.entry_hash() == hashlib.sha256(b"\x00" + leaf).digest()
    assert Entry.from_leaf(leaf) == e


@pytest.mark.parametrize(
    "leaf",
    [
        b'{"v":1}',
        b"not json",
        b"[1,2]",
        # not canonical: whitespace, key order
        b'{"body":{},"kind":"x","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","seq":0,'
        b'"site":"s","ts":"2026-11-28T12:00:00.000Z", "v":1}',
        b'{"v":1,"body":{},"kind":"x","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",'
        b'"seq":0,"site":"s","ts":"2026-11-28T12:00:00.000Z"}',
        # float weight
        b'{"body":{"w":1.5},"kind":"x","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",'
        b'"seq":0,"site":"s","ts":"2026-11-28T12:00:00.000Z","v":1}',
        # duplicate key
        b'{"body":{"w":1,"w":2},"kind":"x","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",'
        b'"seq":0,"site":"s","ts":"2026-11-28T12:00:00.000Z","v":1}',
        # local time, not UTC
        b'{"body":{},"kind":"x","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","seq":0,'
        b'"site":"s","ts":"2026-11-28T12:00:00+08:00","v":1}',
        b"\xff\xfe",
    ],
)
def test_malformed_or_non_canonical_leaves_are_rejected(leaf: bytes) -> None:
    with pytest.raises(EntryError):
        Entry.from_leaf(leaf)


@pytest.mark.parametrize(
    "kw",
    [
        {"body": {"gross_kg": 42000.0}},
        {"body": {"nested": [{"w": 1.25}]}},
        {"body": {"big": 2**60}},
        {"body": ["not", "an", "object"]},
        {"seq": -1},
        {"seq": True},
        {"ts": "2026-11-28 12:00:00"},
        {"ts": "2026-02-30T12:00:00Z"},
        {"kind": "Weighing!"},
        {"site": ""},
        {"prev": b"\x00" * 31},
        {"v": 2},
    ],
)
def test_bad_fields_are_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(EntryError):
        _entry(**kw)


def test_seq0_must_point_at_zero_hash() -> None:
    with pytest.raises(ChainError):
        _entry(prev=b"\x01" * 32)


def test_timestamps() -> None:
    t = datetime(2026, 11, 28, 4, 5, 6, 789123, tzinfo=UTC)
    assert format_ts(t) == "2026-11-28T04:05:06.789Z"
    assert parse_ts("2026-11-28T04:05:06.789Z") == t.replace(microsecond=789000)
    with pytest.raises(EntryError):
        format_ts(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-11-28T04:05:06Z", datetime(2026, 11, 28, 4, 5, 6, tzinfo=UTC)),
        ("2026-11-28T04:05:06.7Z", datetime(2026, 11, 28, 4, 5, 6, 700000, tzinfo=UTC)),
        ("2024-02-29T23:59:59.123456789Z",
         datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)),
    ],
)
def test_parse_ts_accepts_rfc3339_utc(text: str, want: datetime) -> None:
    assert parse_ts(text) == want


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2026-02-30T00:00:00Z", "not a valid calendar time"),
        ("2026-11-28T24:00:00Z", "not a valid calendar time"),
        ("2026-11-28T23:59:60Z", "not a valid calendar time"),
        ("2026-11-28T04:05:06.789Z\n", "not an RFC 3339 UTC time"),
        ("2026-11-28 04:05:06Z", "not an RFC 3339 UTC time"),
        ("2026-11-28T04:05:06+08:00", "not an RFC 3339 UTC time"),
        ("2026-11-28T04:05:06.Z", "not an RFC 3339 UTC time"),
        ("\u0662\u0660\u0662\u0666-11-28T04:05:06Z", "not an RFC 3339 UTC time"),  # non-ASCII
    ],
)
def test_parse_ts_refuses_bad_times(text: str, needle: str) -> None:
    with pytest.raises(EntryError, match=needle):
        parse_ts(text)


def test_sign_verify_and_each_specific_failure() -> None:
    key = SignerKey.generate("mine-a")
    e0 = _entry()
    s0 = sign_entry(e0, key)
    e1 = _entry(seq=1, prev=s0.hash, body={"gross_kg": 30000})
    s1 = sign_entry(e1, key)
    assert verify_signed_entry(s0, key.verifier, site="mine-a", seq=0, prev=ZERO_HASH) == e0
    assert verify_signed_entry(s1, key.verifier, site="mine-a", seq=1, prev=s0.hash) == e1
    with pytest.raises(ChainError, match="prev"):
        verify_signed_entry(s1, key.verifier, site="mine-a", seq=1, prev=ZERO_HASH[:31] + b"\1")
    with pytest.raises(ChainError, match="expected seq 2"):
        verify_signed_entry(s1, key.verifier, site="mine-a", seq=2, prev=s0.hash)
    with pytest.raises(ChainError, match="site"):
        verify_signed_entry(s1, key.verifier, site="mine-b", seq=1, prev=s0.hash)
    other = SignerKey.generate("mine-a")
    with pytest.raises(SignatureError):
        verify_signed_entry(s1, other.verifier, site="mine-a", seq=1, prev=s0.hash)
    edited = SignedEntry(s1.leaf.replace(b"30000", b"20000"), s1.sig)
    with pytest.raises(SignatureError):
        verify_signed_entry(edited, key.verifier, site="mine-a", seq=1, prev=s0.hash)


def test_wire_form_round_trip_and_hash_check() -> None:
    key = SignerKey.generate("mine-a")
    se = sign_entry(_entry(), key)
    wire = se.to_wire()
    assert SignedEntry.from_wire(wire) == se
    assert base64.b64decode(wire["hash"]) == se.hash
    with pytest.raises(EntryError, match="hash"):
        SignedEntry.from_wire({**wire, "hash": base64.b64encode(bytes(32)).decode()})
    with pytest.raises(EntryError):
        SignedEntry.from_wire({"leaf": wire["leaf"]})
