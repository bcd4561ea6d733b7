"""The append-only SQLite ledger of one site — also the edge's MQTT outbox.

Tables (created with sqlite-utils):
  entries(seq PK, leaf, hash, sig)   exact canonical leaf bytes, their leaf hash and signature
  nodes(level, idx, hash)            complete Merkle subtrees, written with the entry that
                                     completes them, so roots and proofs are O(log n) reads
  checkpoints(id PK, size, note)     signed checkpoints the site has issued
  meta(key PK, value)                site id, site key, schema version, small durable values

WAL with ``synchronous=FULL``; every append commits before it returns. The seq and prev of a
new entry are read inside the write transaction (BEGIN IMMEDIATE), so two processes appending
to the same file cannot fork it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ledger import merkle
from ledger.checkpoint import Checkpoint, origin_for_site, sign_checkpoint
from ledger.entry import ZERO_HASH, Entry, SignedEntry, format_ts, sign_entry
from ledger.errors import EntryError, ProofError, StoreError
from ledger.keys import SignerKey, VerifierKey

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["LedgerStore", "VerifyReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1"
_RESERVED_META = {"site", "schema", "site_key"}
# Keys a caller might try to smuggle into a body to set the envelope themselves.
_ENVELOPE_KEYS = ("seq", "prev")

Clock = Callable[[], datetime]


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a full audit. ``first_bad_seq`` is None when the problem is not one entry."""

    ok: bool
    size: int
    checked_entries: int
    checked_checkpoints: int
    root: bytes | None
    first_bad_seq: int | None = None
    problem: str | None = None
    error_type: str | None = None


class LedgerStore:
    """Use ``LedgerStore.open(path, site=..., signer=...)``; close it, or use ``with``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, site: str,
                 signer: SignerKey | None, clock: Clock) -> None:
        self._conn = conn
        self.path = path
        self.site = site
        self._signer = signer
        self._clock = clock

    # ------------------------------------------------------------------------ open / close

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        site: str | None = None,
        signer: SignerKey | None = None,
        clock: Clock | None = None,
        create: bool = True,
    ) -> LedgerStore:
        """Open (or create, when ``create`` and ``site`` are given) the ledger at ``path``.

        ``site=None`` opens an existing store for reading and auditing.
        """
        p = Path(path)
        missing = StoreError(
            f"{p}: no ledger here; create one by appending with --site, or check the path"
        )
        if not p.exists() and (not create or site is None):
            raise missing
        try:
            conn = sqlite3.connect(str(p), isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Judge "new" by the committed schema, not the file: a crash during creation can
            # leave an empty or header-only file, which must be created again, not refused.
            has_schema = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            if not has_schema:
                if not create or site is None:
                    conn.close()
                    raise missing
                _create_schema(_utils(conn), site, signer)
            meta = {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{p}: not a readable coalgate ledger — the file is damaged, truncated or not "
                f"SQLite (SQLite says: {exc}); audit a backup or the central's copy instead"
            ) from None
        stored_site = meta.get("site")
        if stored_site is None or meta.get("schema") != SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"{p}: not a coalgate ledger (schema {meta.get('schema')!r})")
        if site is not None and site != stored_site:
            conn.close()
            raise StoreError(f"{p}: this ledger belongs to site {stored_site!r}, not {site!r}")
        if signer is not None:
            site_key = meta.get("site_key")
            if site_key is None:
                _utils(conn).table("meta").insert(
                    {"key": "site_key", "value": signer.verifier.to_text()}
                )
            elif site_key != signer.verifier.to_text():
                conn.close()
                raise StoreError(
                    f"{p}: signer key {signer.name}+{signer.key_id.hex()} is not this site's "
                    f"key ({site_key.split('+')[0]}+{site_key.split('+')[1]}); use the key the "
                    "ledger was created with"
                )
        return cls(conn, p, stored_site, signer, clock or _system_clock)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ append

    def append(self, kind: str, body: Mapping[str, Any], ts: str | None = None,
               **unexpected: object) -> SignedEntry:
        """Append one entry; it is durable (committed, fsynced) when this returns."""
        if unexpected:
            _refuse_envelope(unexpected)
        return self.append_batch([(kind, body)], ts=ts)[0]

    def append_batch(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], ts: str | None = None
    ) -> list[SignedEntry]:
        """Append many entries in one transaction: all of them, or (on any error) none."""
        signer = self._require_signer()
        checked = [_check_item(i, item) for i, item in enumerate(items)]
        if not checked:
            return []
        stamp = ts if ts is not None else format_ts(self._clock())
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot start a write transaction: {exc}") from None
        try:
            seq, prev = self._head_in_txn()
            pending: dict[tuple[int, int], bytes] = {}

            def node(level: int, idx: int) -> bytes:
                hit = pending.get((level, idx))
                return hit if hit is not None else self._node(level, idx)

            out: list[SignedEntry] = []
            rows: list[tuple[int, bytes, bytes, bytes]] = []
            for kind, body in checked:
                entry = Entry(site=self.site, seq=seq, ts=stamp, kind=kind, body=body, prev=prev)
                se = sign_entry(entry, signer)
                for level, idx, h in merkle.nodes_after_append(seq, se.hash, node):
                    pending[(level, idx)] = h
                rows.append((seq, se.leaf, se.hash, se.sig))
                out.append(se)
                seq, prev = seq + 1, se.hash
            conn.executemany("INSERT INTO entries(seq, leaf, hash, sig) VALUES (?,?,?,?)", rows)
            conn.executemany(
                "INSERT INTO nodes(level, idx, hash) VALUES (?,?,?)",
                [(lv, ix, h) for (lv, ix), h in pending.items()],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    def _require_signer(self) -> SignerKey:
        if self._signer is None:
            raise StoreError(f"{self.path}: opened without a signer key; cannot append or sign")
        return self._signer

    def _head_in_txn(self) -> tuple[int, bytes]:
        row = self._conn.execute(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 0, ZERO_HASH
        return int(row[0]) + 1, bytes(row[1])

    # ------------------------------------------------------------------------------- reads

    @property
    def size(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    @property
    def head_hash(self) -> bytes:
        """Hash of the last entry (32 zero bytes for an empty ledger) — the next ``prev``."""
        return self._head_in_txn()[1]

    def get(self, seq: int) -> SignedEntry:
        row = self._conn.execute("SELECT leaf, sig FROM entries WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no entry with seq {seq} (size {self.size})")
        return SignedEntry(bytes(row[0]), bytes(row[1]))

    def iter_entries(self, start: int = 0, stop: int | None = None) -> Iterator[SignedEntry]:
        """Entries with ``start <= seq < stop`` in seq order, streamed."""
        end = stop if stop is not None else 2**62
        cur = self._conn.execute(
            "SELECT leaf, sig FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        )
        for leaf, sig in cur:
            yield SignedEntry(bytes(leaf), bytes(sig))

    def _node(self, level: int, idx: int) -> bytes:
        row = self._conn.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if row is None:
            raise StoreError(
                f"{self.path}: Merkle node (level {level}, index {idx}) is missing; "
                "the store is damaged — run 'coalgate ledger verify'"
            )
        return bytes(row[0])

    def _size_arg(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise ProofError(f"tree size {size} is outside 0..{current} (the ledger's size)")
        return size

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_at(self._size_arg(size), self._node)

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof_at(seq, self._size_arg(size), self._node)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return merkle.consistency_proof_at(old, self._size_arg(new), self._node)

    # ------------------------------------------------------------------------- checkpoints

    def sign_checkpoint(self) -> str:
        """Sign a checkpoint of the current tree, store it, and return the note."""
        signer = self._require_signer()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            size = self._head_in_txn()[0]
            cp = Checkpoint(origin_for_site(self.site), size, merkle.root_at(size, self._node))
            note = sign_checkpoint(cp, signer)
            conn.execute("INSERT INTO checkpoints(size, note) VALUES (?, ?)", (size, note))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return note

    def latest_checkpoint(self) -> str | None:
        row = self._conn.execute(
            "SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def checkpoints(self) -> list[str]:
        return [str(r[0]) for r in self._conn.execute("SELECT note FROM checkpoints ORDER BY id")]

    # -------------------------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        if key in _RESERVED_META:
            raise StoreError(f"meta key {key!r} is reserved by the ledger")
        _utils(self._conn).table("meta").upsert({"key": key, "value": value}, pk="key")

    # ------------------------------------------------------------------------------ verify

    def verify(self, verifier: VerifierKey) -> VerifyReport:
        """Audit everything; never raises for a damaged store, reports the first problem."""
        from ledger.audit import audit_store

        return audit_store(self, verifier)

    # Narrow hooks for ledger.audit (same package); not part of the public API.
    def _rows(self) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        cur = self._conn.execute("SELECT seq, leaf, hash, sig FROM entries ORDER BY seq")
        for seq, leaf, h, sig in cur:
            yield int(seq), bytes(leaf), bytes(h), bytes(sig)

    def _node_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0])

    def _node_or_none(self, level: int, idx: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _checkpoint_rows(self) -> list[tuple[int, int, str]]:
        return [
            (int(i), int(s), str(n))
            for i, s, n in self._conn.execute("SELECT id, size, note FROM checkpoints ORDER BY id")
        ]


def _utils(conn: sqlite3.Connection) -> sqlite_utils.Database:
    # Imported on demand: sqlite-utils pulls in numpy, which appends and audits never need.
    import sqlite_utils

    return sqlite_utils.Database(conn)


def _create_schema(db: sqlite_utils.Database, site: str, signer: SignerKey | None) -> None:
    # Validate the site id the same way entries do before writing anything.
    Entry(site=site, seq=0, ts="2000-01-01T00:00:00Z", kind="config", body={}, prev=ZERO_HASH)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        db.table("entries").create(
            {"seq": int, "leaf": bytes, "hash": bytes, "sig": bytes},
            pk="seq", not_null={"leaf", "hash", "sig"}, if_not_exists=True,
        )
        db.table("nodes").create(
            {"level": int, "idx": int, "hash": bytes},
            pk=("level", "idx"), not_null={"hash"}, if_not_exists=True,
        )
        db.table("checkpoints").create(
            {"id": int, "size": int, "note": str}, pk="id", not_null={"size", "note"},
            if_not_exists=True,
        )
        db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        meta = [{"key": "site", "value": site}, {"key": "schema", "value": SCHEMA_VERSION}]
        if signer is not None:
            meta.append({"key": "site_key", "value": signer.verifier.to_text()})
        db.table("meta").insert_all(meta, ignore=True)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _refuse_envelope(fields: Mapping[str, object]) -> None:
    names = ", ".join(sorted(fields))
    if set(fields) & {"seq", "prev", "site", "v"}:
        raise EntryError(
            f"{names}: the ledger assigns seq, prev, site and v itself; pass only kind and body"
        )
    raise EntryError(f"unexpected argument(s) {names}; append takes kind, body and ts")


def _check_item(i: int, item: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise EntryError(
            f"batch item {i}: expected (kind, body); seq and prev are assigned by the ledger"
        )
    kind, body = item
    if not isinstance(body, Mapping):
        raise EntryError(f"batch item {i}: body must be a JSON object")
    for key in _ENVELOPE_KEYS:
        if key in body:
            raise EntryError(
                f"batch item {i}: body carries {key!r}; the ledger assigns seq and prev itself"
            )
    body = dict(body)
    # Validate now (before the transaction) so a bad item leaves the store unchanged.
    Entry(site="x", seq=0, ts="2000-01-01T00:00:00Z", kind=kind, body=body, prev=ZERO_HASH)
    return kind, body

