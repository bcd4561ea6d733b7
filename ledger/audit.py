"""Full audit of a site's SQLite ledger: every entry, every Merkle node, every checkpoint.

Kept apart from the store so the store stays about reading and writing; the audit only reads.
It stops at the first problem and names the seq, because everything after a broken link is
unprovable anyway.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from ledger import merkle
from ledger.checkpoint import open_checkpoint, origin_for_site
from ledger.entry import ZERO_HASH, SignedEntry, verify_signed_entry
from ledger.errors import ChainError, CheckpointError, EntryError, LedgerError, StoreError
from ledger.keys import VerifierKey

if TYPE_CHECKING:
    from ledger.store import LedgerStore, VerifyReport

__all__ = ["audit_store", "expected_node_count"]


class _Problem(Exception):
    def __init__(self, seq: int | None, error: LedgerError) -> None:
        super().__init__(str(error))
        self.seq = seq
        self.error = error


def expected_node_count(size: int) -> int:
    """How many complete subtrees a tree of ``size`` leaves has (what the nodes table holds)."""
    total, n = 0, size
    while n:
        total += n
        n >>= 1
    return total


def audit_store(store: LedgerStore, verifier: VerifierKey) -> VerifyReport:
    from ledger.store import VerifyReport
    state = {"entries": 0, "checkpoints": 0}
    try:
        root = _audit(store, verifier, state)
    except _Problem as p:
        return VerifyReport(
            ok=False, size=state["entries"], checked_entries=state["entries"],
            checked_checkpoints=state["checkpoints"], root=None, first_bad_seq=p.seq,
            problem=str(p.error), error_type=type(p.error).__name__,
        )
    except sqlite3.DatabaseError as exc:
        at = state["entries"]
        return VerifyReport(
            ok=False, size=at, checked_entries=at, checked_checkpoints=state["checkpoints"],
            root=None, first_bad_seq=at,
            problem=f"the database file is damaged or truncated (SQLite: {exc}); "
            f"entries from seq {at} on cannot be read",
            error_type="StoreError",
        )
    return VerifyReport(
        ok=True, size=state["entries"], checked_entries=state["entries"],
        checked_checkpoints=state["checkpoints"], root=root,
    )


def _audit(store: LedgerStore, verifier: VerifierKey, state: dict[str, int]) -> bytes:
    expected, prev = 0, ZERO_HASH
    # The most recent node at each level: exactly the left siblings later leaves will need.
    last: dict[int, tuple[int, bytes]] = {}

    def frontier(level: int, idx: int) -> bytes:
        got = last.get(level)
        if got is None or got[0] != idx:
            raise AssertionError(f"audit frontier lost node ({level}, {idx})")
        return got[1]

    for seq, leaf, stored_hash, sig in store._rows():
        if seq != expected:
            raise _Problem(expected, ChainError(
                f"seq {expected} is missing (the next stored entry is seq {seq}): "
                "an entry was deleted"))
        se = SignedEntry(leaf, sig)
        try:
            verify_signed_entry(se, verifier, site=store.site, seq=seq, prev=prev)
        except LedgerError as exc:
            raise _Problem(seq, exc) from None
        if stored_hash != se.hash:
            raise _Problem(seq, EntryError(
                f"seq {seq}: the stored hash column does not match SHA-256(0x00 || leaf)"))
        for level, idx, h in merkle.nodes_after_append(seq, se.hash, frontier):
            last[level] = (idx, h)
            if store._node_or_none(level, idx) != h:
                raise _Problem(seq, StoreError(
                    f"seq {seq}: stored Merkle node (level {level}, index {idx}) is missing or "
                    "wrong, so proofs served from this store would be false"))
        expected, prev = seq + 1, se.hash
        state["entries"] = expected

    size = expected
    if store._node_count() != expected_node_count(size):
        raise _Problem(size, ChainError(
            f"the Merkle nodes record more entries than the {size} present: entries from seq "
            f"{size} on were deleted from the end of the log"))
    root = merkle.root_at(size, store._node)

    origin = origin_for_site(store.site)
    for cid, stored_size, note in store._checkpoint_rows():
        try:
            cp = open_checkpoint(note, verifier)
        except LedgerError as exc:
            raise _Problem(None, CheckpointError(f"checkpoint #{cid}: {exc}")) from None
        if cp.origin != origin:
            raise _Problem(None, CheckpointError(
                f"checkpoint #{cid}: origin {cp.origin!r} is not {origin!r}"))
        if cp.size != stored_size:
            raise _Problem(None, CheckpointError(
                f"checkpoint #{cid}: signed size {cp.size} differs from the stored size column"))
        if cp.size > size:
            raise _Problem(size, CheckpointError(
                f"checkpoint #{cid} was signed at size {cp.size} but the log holds {size} "
                f"entries: entries from seq {size} on were deleted"))
        if merkle.root_at(cp.size, store._node) != cp.root_hash:
            raise _Problem(None, CheckpointError(
                f"checkpoint #{cid} (size {cp.size}) does not match the log: an entry before "
                f"seq {cp.size} was rewritten after the checkpoint was signed"))
        state["checkpoints"] += 1
    return root
