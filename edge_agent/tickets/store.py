"""The gate's small SQLite store for e-tickets: trust list, revocations, uses, issued tickets.

Everything the gate needs to verify tickets with no network lives here, so a gate that goes
offline keeps refusing what it learnt was revoked or used before the outage.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ledger.errors import LedgerError

__all__ = ["TicketStore", "TicketStoreError", "UseRecord", "RevocationRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trust (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    serial INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    ticket_id TEXT PRIMARY KEY,
    revoked_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS used (
    ticket_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    seq INTEGER,
    used_at TEXT NOT NULL,
    here INTEGER NOT NULL          -- 1: used at this gate; 0: the central reported a use elsewhere
);
CREATE TABLE IF NOT EXISTS issued (
    ticket_id TEXT PRIMARY KEY,
    plate TEXT NOT NULL,           -- normalised, for lookup when a driver's phone is dead
    valid_to TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS issued_plate ON issued (plate);
"""


class TicketStoreError(LedgerError):
    """The gate ticket store cannot be opened or a write conflicts with what it holds."""


@dataclass(frozen=True)
class UseRecord:
    ticket_id: str
    site: str
    seq: int | None
    used_at: str
    here: bool


@dataclass(frozen=True)
class RevocationRecord:
    ticket_id: str
    revoked_at: str
    reason: str


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TicketStore:
    """Durable (WAL, synchronous=FULL) and safe to open from several processes.

    One instance is one connection, for one thread. ``shared=True`` only lets another thread
    close it (GateTicketVerifier keeps one per thread and closes them all at shutdown).
    """

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        try:
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                       check_same_thread=not shared)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise TicketStoreError(
                f"{path}: cannot open the gate ticket store ({exc}); check the path is a "
                "writable SQLite file"
            ) from exc
        self.path = path

    def close(self) -> None:
        self._db.close()

    # -- trust list ----------------------------------------------------------------------
    def trust_note(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT serial, note FROM trust WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def set_trust_note(self, serial: int, note: str) -> None:
        self._db.execute(
            "INSERT INTO trust (id, serial, note) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, note = excluded.note",
            (serial, note),
        )

    # -- revocations ---------------------------------------------------------------------
    def revoke(self, ticket_id: str, revoked_at: datetime, reason: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO revoked (ticket_id, revoked_at, reason) VALUES (?, ?, ?)",
            (ticket_id, _ts(revoked_at), reason),
        )

    def revoke_many(self, rows: list[tuple[str, datetime, str]]) -> None:
        """Many revocations in one transaction (initial sync after provisioning)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO revoked (ticket_id, revoked_at, reason) VALUES (?, ?, ?)",
                [(tid, _ts(at), reason) for tid, at, reason in rows],
            )

    def revocation(self, ticket_id: str) -> RevocationRecord | None:
        row = self._db.execute(
            "SELECT ticket_id, revoked_at, reason FROM revoked WHERE ticket_id = ?", (ticket_id,)
        ).fetchone()
        return RevocationRecord(*row) if row else None

    # -- uses ----------------------------------------------------------------------------
    def record_use(
        self, ticket_id: str, *, site: str, seq: int | None, used_at: datetime, here: bool
    ) -> None:
        """Record a use; the same use again is a no-op, a different one is an error."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            old = self.use(ticket_id)
            if old is None:
                self._db.execute(
                    "INSERT INTO used (ticket_id, site, seq, used_at, here) VALUES (?,?,?,?,?)",
                    (ticket_id, site, seq, _ts(used_at), int(here)),
                )
            elif here and old.here and old.seq != seq:
                raise TicketStoreError(
                    f"ticket {ticket_id} was already used at this gate (ledger seq {old.seq}, "
                    f"{old.used_at}); refusing to record a second use at seq {seq}"
                )

    def use(self, ticket_id: str) -> UseRecord | None:
        row = self._db.execute(
            "SELECT ticket_id, site, seq, used_at, here FROM used WHERE ticket_id = ?",
            (ticket_id,),
        ).fetchone()
        return UseRecord(row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    # -- issued tickets ------------------------------------------------------------------
    def add_issued(self, ticket_id: str, plate: str, valid_to: datetime, text: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO issued (ticket_id, plate, valid_to, text) VALUES (?,?,?,?)",
            (ticket_id, plate, _ts(valid_to), text),
        )

    def issued_for_plate(self, plate: str, now: datetime) -> list[str]:
        rows = self._db.execute(
            "SELECT text FROM issued WHERE plate = ? AND valid_to > ? ORDER BY valid_to",
            (plate, _ts(now)),
        ).fetchall()
        return [str(r[0]) for r in rows]
