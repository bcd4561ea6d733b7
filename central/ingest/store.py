"""Database side of the ingest: per-site locking, verified entries, Merkle nodes, alarms.

Every function takes an open psycopg cursor inside the caller's transaction and never commits:
the worker commits once per message, and acks only after that commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from central.ingest.core import AlarmDraft, VerifiedEntry
from central.witness import StoredCheckpoint
from ledger.entry import ZERO_HASH
from ledger.merkle import nodes_after_append

__all__ = [
    "SiteRow",
    "DbNodes",
    "lock_site",
    "known_hashes",
    "store_entries",
    "raise_alarm",
    "record_reject",
    "prune_rejected",
    "clip",
    "get_checkpoint",
    "store_checkpoint",
    "update_status",
    "month_start",
]

Cursor = psycopg.Cursor[Any]
# Rejected payloads are kept for forensics, but not without bound.
_MAX_REJECT_PAYLOAD = 64 * 1024
# Error text and topics from a refused message can carry whatever the sender put in a field
# (a 6 MB string, say): stored and logged only this long.
MAX_TEXT = 2000


def clip(text: object, limit: int = MAX_TEXT) -> str:
    """``text`` as a string of at most about ``limit`` characters, saying how much was cut."""
    s = str(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit]}… [{len(s) - limit} more characters cut]"


def _clip_detail(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: clip(v) if isinstance(v, str) else v for k, v in detail.items()}


@dataclass(frozen=True)
class SiteRow:
    site: str
    verifier_key: str
    verified_seq: int
    head_hash: bytes
    checkpoint_size: int | None


def lock_site(cur: Cursor, site: str) -> SiteRow | None:
    """Lock the site's state row for this transaction (serialises all writers of one site).

    Returns None for a site that is not enrolled.
    """
    row = cur.execute("SELECT verifier_key FROM sites WHERE id = %s", (site,)).fetchone()
    if row is None:
        return None
    verifier_key = row[0]
    # central.sites.enrol_site writes both rows, but a sites row written by hand (psql) may
    # come without its state row.
    cur.execute("INSERT INTO site_state (site) VALUES (%s) ON CONFLICT DO NOTHING", (site,))
    st = cur.execute(
        "SELECT verified_seq, head_hash, checkpoint_size FROM site_state"
        " WHERE site = %s FOR UPDATE",
        (site,),
    ).fetchone()
    assert st is not None
    return SiteRow(site, verifier_key, st[0], bytes(st[1]) if st[1] else ZERO_HASH, st[2])


def known_hashes(cur: Cursor, site: str, lo: int, hi: int) -> dict[int, bytes]:
    """Stored entry hashes for seqs in [lo, hi] (level-0 Merkle nodes)."""
    if hi < lo:
        return {}
    rows = cur.execute(
        "SELECT idx, hash FROM merkle_nodes WHERE site = %s AND level = 0"
        " AND idx BETWEEN %s AND %s",
        (site, lo, hi),
    ).fetchall()
    return {idx: bytes(h) for idx, h in rows}


class DbNodes:
    """A ``ledger.merkle.NodeReader`` over merkle_nodes plus nodes not yet written."""

    def __init__(self, cur: Cursor, site: str) -> None:
        self._cur = cur
        self._site = site
        self._cache: dict[tuple[int, int], bytes] = {}
        self.pending: list[tuple[int, int, bytes]] = []

    def prefetch_frontier(self, size: int) -> None:
        """Load the complete subtrees of the tree of ``size`` leaves — all an append needs."""
        keys = [(lvl, (size >> lvl) - 1) for lvl in range(size.bit_length()) if size >> lvl & 1]
        if not keys:
            return
        rows = self._cur.execute(
            "SELECT level, idx, hash FROM merkle_nodes WHERE site = %s AND (level, idx) IN "
            "(SELECT * FROM unnest(%s::smallint[], %s::bigint[]))",
            (self._site, [k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall()
        for level, idx, h in rows:
            self._cache[(level, idx)] = bytes(h)

    def __call__(self, level: int, index: int) -> bytes:
        key = (level, index)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        row = self._cur.execute(
            "SELECT hash FROM merkle_nodes WHERE site = %s AND level = %s AND idx = %s",
            (self._site, level, index),
        ).fetchone()
        if row is None:
            raise KeyError(f"site {self._site}: Merkle node (level {level}, index {index}) missing")
        value = bytes(row[0])
        self._cache[key] = value
        return value

    def append(self, index: int, leaf_hash: bytes) -> None:
        new = nodes_after_append(index, leaf_hash, self)
        if not any(level == 0 for level, _, _ in new):
            new = [(0, index, leaf_hash), *new]
        for level, idx, h in new:
            self._cache[(level, idx)] = h
            self.pending.append((level, idx, h))


def store_entries(cur: Cursor, site: str, entries: Sequence[VerifiedEntry]) -> None:
    """Write verified entries and their Merkle nodes, and move the site's head (no commit)."""
    if not entries:
        return
    nodes = DbNodes(cur, site)
    nodes.prefetch_frontier(entries[0].seq)
    for ve in entries:
        nodes.append(ve.seq, ve.hash)
    with cur.copy("COPY entries (site, seq, ts, kind, leaf, hash, sig, body) FROM STDIN") as cp:
        for ve in entries:
            e = ve.entry
            cp.write_row(
                (site, e.seq, ve.ts, e.kind, ve.signed.leaf, ve.hash, ve.signed.sig,
                 json.dumps(e.body, ensure_ascii=False))
            )
    with cur.copy("COPY merkle_nodes (site, level, idx, hash) FROM STDIN") as cp:
        for level, idx, h in nodes.pending:
            cp.write_row((site, level, idx, h))
    last = entries[-1]
    cur.execute(
        "UPDATE site_state SET verified_seq = %s, head_hash = %s, last_seen = now(),"
        " updated_at = now() WHERE site = %s",
        (last.seq, last.hash, site),
    )


def raise_alarm(cur: Cursor, site: str, draft: AlarmDraft) -> bool:
    """Insert an alarm unless the same (site, code, seq) is already open; True if inserted."""
    cur.execute(
        "INSERT INTO alarms (site, code, severity, seq, txn, detail)"
        " SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS ("
        "  SELECT 1 FROM alarms WHERE site = %s AND code = %s"
        "  AND seq IS NOT DISTINCT FROM %s AND state = 'open')",
        (site, draft.code, draft.severity, draft.seq, draft.txn,
         Jsonb(_clip_detail(dict(draft.detail))), site, draft.code, draft.seq),
    )
    return cur.rowcount == 1


def record_reject(
    cur: Cursor, site: str | None, topic: str, reason: str, detail: str, payload: bytes
) -> None:
    cur.execute(
        "INSERT INTO rejected_messages (site, topic, reason, detail, payload)"
        " VALUES (%s, %s, %s, %s, %s)",
        (site, clip(topic, 1000), clip(reason, 200), clip(detail), payload[:_MAX_REJECT_PAYLOAD]),
    )


def prune_rejected(cur: Cursor, now: datetime, *, keep_days: int, keep_max: int) -> int:
    """Delete rejected messages older than ``keep_days`` and beyond the newest ``keep_max``;
    returns how many were deleted. Safe from several workers at once (plain deletes)."""
    cur.execute("DELETE FROM rejected_messages WHERE received_at < %s",
                (now - timedelta(days=keep_days),))
    old = cur.rowcount
    cur.execute(
        "DELETE FROM rejected_messages WHERE id < ("
        " SELECT id FROM rejected_messages ORDER BY id DESC OFFSET %s LIMIT 1)",
        (max(0, keep_max - 1),),
    )
    return old + cur.rowcount


def get_checkpoint(cur: Cursor, site: str, size: int | None) -> StoredCheckpoint | None:
    if size is None:
        return None
    row = cur.execute(
        "SELECT size, root, cosigned FROM checkpoints WHERE site = %s AND size = %s",
        (site, size),
    ).fetchone()
    return StoredCheckpoint(row[0], bytes(row[1]), row[2]) if row else None


def store_checkpoint(
    cur: Cursor, site: str, size: int, root: bytes, note: str, cosigned: str
) -> None:
    cur.execute(
        "INSERT INTO checkpoints (site, size, root, note, cosigned) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (site, size) DO NOTHING",
        (site, size, root, note, cosigned),
    )
    cur.execute(
        "UPDATE site_state SET checkpoint_size = GREATEST(COALESCE(checkpoint_size, -1), %s),"
        " last_seen = now(), updated_at = now() WHERE site = %s",
        (size, site),
    )


def update_status(cur: Cursor, site: str, status: dict[str, Any], *, fresh: bool) -> bool:
    """Record a status message; ``fresh`` is False for a retained (old) one. False if unknown."""
    cur.execute(
        "INSERT INTO site_state (site) SELECT id FROM sites WHERE id = %s ON CONFLICT DO NOTHING",
        (site,),
    )
    cur.execute(
        "UPDATE site_state SET online = %s, last_status = %s, updated_at = now(),"
        " last_seen = CASE WHEN %s THEN now() ELSE last_seen END WHERE site = %s",
        (status.get("state") == "online", Jsonb(status), fresh, site),
    )
    return cur.rowcount == 1


def month_start(ts: datetime) -> datetime:
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def months_of(entries: Iterable[VerifiedEntry]) -> set[datetime]:
    return {month_start(ve.ts) for ve in entries}
