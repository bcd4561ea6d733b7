"""The SQLite ledger: appends, batches, proofs, checkpoints, bad input and tampering."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.entry import ZERO_HASH, Entry, SignedEntry, sign_entry
from ledger.errors import EntryError, ProofError, StoreError
from ledger.keys import SignerKey
from ledger.store import LedgerStore

SITE = "mine-a"


class FakeClock:
    """An injected clock: each reading is one second after the last."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture()
def key() -> SignerKey:
    return SignerKey.generate(SITE)


def _weighing(i: int) -> dict[str, object]:
    return {"txn": f"{SITE}-20261128-{i}", "pass": "gross", "plate": "陕K12345",
            "gross_kg": 40000 + i, "tare_kg": 15000, "net_kg": 25000 + i}


def _fill(path: Path, key: SignerKey, n: int = 10, checkpoint_at: int | None = None) -> None:
    with LedgerStore.open(path, site=SITE, signer=key, clock=FakeClock()) as store:
        for i in range(n):
            store.append("weighing", _weighing(i))
            if checkpoint_at is not None and i + 1 == checkpoint_at:
                store.sign_checkpoint()


def _verify(path: Path, key: SignerKey):
    with LedgerStore.open(path) as store:
        return store.verify(key.verifier)


def test_append_assigns_seq_prev_and_time(tmp_path: Path, key: SignerKey) -> None:
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key, clock=FakeClock()) as store:
        a = store.append("weighing", _weighing(0))
        b = store.append("alarm", {"code": "overload", "severity": "critical"})
        assert (a.entry.seq, b.entry.seq) == (0, 1)
        assert a.entry.prev == ZERO_HASH and b.entry.prev == a.hash
        assert a.entry.ts == "2026-11-28T08:00:01.000Z"
        assert store.size == 2 and store.head_hash == b.hash
        assert store.get(1) == b
        assert [e.hash for e in store.iter_entries()] == [a.hash, b.hash]
        assert list(store.iter_entries(1)) == [b]


def test_reopen_continues_the_chain(tmp_path: Path, key: SignerKey) -> None:
    _fill(tmp_path / "l.db", key, 3)
    _fill(tmp_path / "l.db", key, 3)
    report = _verify(tmp_path / "l.db", key)
    assert report.ok and report.size == 6


def test_batch_is_one_transaction_and_proofs_match_list_form(tmp_path, key) -> None:
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key) as store:
        store.append("config", {"sha256": "00"})
        out = store.append_batch([("weighing", _weighing(i)) for i in range(130)])
        assert [se.entry.seq for se in out] == list(range(1, 131))
        hashes = [se.hash for se in store.iter_entries()]
        for size in (1, 2, 7, 64, 100, 131):
            assert store.root(size) == merkle.root(hashes[:size])
            for seq in {0, size // 2, size - 1}:
                proof = store.inclusion_proof(seq, size)
                merkle.verify_inclusion(seq, size, hashes[seq], proof, store.root(size))
        cproof = store.consistency_proof(37, 131)
        merkle.verify_consistency(37, 131, store.root(37), store.root(), cproof)
        with pytest.raises(ProofError):
            store.inclusion_proof(131)
        with pytest.raises(ProofError):
            store.root(132)
        # A bad item anywhere in a batch writes nothing.
        with pytest.raises(EntryError):
            store.append_batch([("weighing", _weighing(1)), ("weighing", {"w": 1.5})])
        assert store.size == 131


def test_checkpoints_are_signed_stored_and_verified(tmp_path: Path, key: SignerKey) -> None:
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key) as store:
        assert store.latest_checkpoint() is None
        store.append_batch([("weighing", _weighing(i)) for i in range(5)])
        first = store.sign_checkpoint()
        store.append("weighing", _weighing(5))
        second = store.sign_checkpoint()
        assert store.checkpoints() == [first, second]
        assert store.latest_checkpoint() == second
        cp1, cp2 = open_checkpoint(first, key.verifier), open_checkpoint(second, key.verifier)
        assert (cp1.origin, cp1.size, cp2.size) == ("coalgate/mine-a", 5, 6)
        proof = store.consistency_proof(5, 6)
        merkle.verify_consistency(5, 6, cp1.root_hash, cp2.root_hash, proof)
        report = store.verify(key.verifier)
        assert report.ok and report.checked_checkpoints == 2 and report.root == cp2.root_hash


def test_meta_values(tmp_path: Path, key: SignerKey) -> None:
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key) as store:
        assert store.get_meta("acked_seq") is None
        store.set_meta("acked_seq", "41")
        store.set_meta("acked_seq", "42")
        assert store.get_meta("acked_seq") == "42"
        with pytest.raises(StoreError, match="reserved"):
            store.set_meta("site", "mine-b")


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kind", "body", "match"),
    [
        ("weighing", {"gross_kg": 40000.5}, "float"),
        ("weighing", {"gross_kg": 4e4}, "float"),
        ("weighing", {"seq": 7}, "assigns seq"),
        ("weighing", {"prev": "AAAA"}, "assigns seq and prev"),
        ("weighing", ["not", "an", "object"], "object"),
        ("Weighing Now", {}, "kind"),
    ],
)
def test_bad_input_is_refused_and_store_unchanged(tmp_path, key, kind, body, match) -> None:
    _fill(tmp_path / "l.db", key, 2)
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key) as store:
        before = (store.size, store.root())
        with pytest.raises(EntryError, match=match):
            store.append(kind, body)
        assert (store.size, store.root()) == before
    assert _verify(tmp_path / "l.db", key).ok


def test_caller_cannot_supply_seq_or_prev(tmp_path: Path, key: SignerKey) -> None:
    with LedgerStore.open(tmp_path / "l.db", site=SITE, signer=key) as store:
        with pytest.raises(EntryError, match="assigns seq"):
            store.append("weighing", {}, seq=5)
        with pytest.raises(EntryError, match="assigns seq"):
            store.append("weighing", {}, prev=ZERO_HASH)
        with pytest.raises(EntryError, match="seq and prev are assigned"):
            store.append_batch([(3, "weighing", {})])  # type: ignore[list-item]
        assert store.size == 0


def test_wrong_site_wrong_key_and_missing_store(tmp_path: Path, key: SignerKey) -> None:
    _fill(tmp_path / "l.db", key, 1)
    with pytest.raises(StoreError, match="belongs to site 'mine-a'"):
        LedgerStore.open(tmp_path / "l.db", site="mine-b", signer=key)
    with pytest.raises(StoreError, match="not this site's key"):
        LedgerStore.open(tmp_path / "l.db", site=SITE, signer=SignerKey.generate(SITE))
    with pytest.raises(StoreError, match="no ledger here"):
        LedgerStore.open(tmp_path / "none.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        LedgerStore.open(tmp_path / "junk.db")
    with LedgerStore.open(tmp_path / "l.db") as ro, pytest.raises(StoreError, match="signer"):
        ro.append("weighing", {})


# ------------------------------------------------------------------------------- tampering


def _sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()


def _leaf(path: Path, seq: int) -> bytes:
    conn = sqlite3.connect(path)
    leaf = conn.execute("SELECT leaf FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    conn.close()
    return bytes(leaf)


def _edit_leaf(path: Path, seq: int, old: bytes, new: bytes) -> None:
    leaf = _leaf(path, seq)
    assert old in leaf
    _sql(path, ("UPDATE entries SET leaf = ? WHERE seq = ?", (leaf.replace(old, new), seq)))


@pytest.fixture()
def ledger_db(tmp_path: Path, key: SignerKey) -> Path:
    path = tmp_path / "l.db"
    _fill(path, key, 10, checkpoint_at=10)
    assert _verify(path, key).ok
    return path


def test_edited_weight_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _edit_leaf(ledger_db, 4, b'"gross_kg":40004', b'"gross_kg":30004')
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 4, "SignatureError")


def test_edited_body_text_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _edit_leaf(ledger_db, 6, "陕K12345".encode(), "晋A99999".encode())
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 6, "SignatureError")


def test_edited_timestamp_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _edit_leaf(ledger_db, 2, b"T08:00:03.000Z", b"T07:00:03.000Z")
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 2, "SignatureError")


def test_non_canonical_rewrite_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _edit_leaf(ledger_db, 3, b'"kind":', b'"kind" :')
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 3, "EntryError")
    assert "canonical" in (r.problem or "")


def test_deleted_row_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _sql(ledger_db, ("DELETE FROM entries WHERE seq = 5", ()))
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 5, "ChainError")
    assert "deleted" in (r.problem or "")


def test_deleted_last_rows_are_caught(ledger_db: Path, key: SignerKey) -> None:
    _sql(ledger_db, ("DELETE FROM entries WHERE seq >= 8", ()))
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq) == (False, 8)
    # Even with the Merkle nodes cleaned up too, the signed checkpoint at size 10 remains.
    _sql(ledger_db, ("DELETE FROM nodes", ()))
    with LedgerStore.open(ledger_db) as store:
        conn = sqlite3.connect(ledger_db)
        nodes: dict[tuple[int, int], bytes] = {}
        with conn:
            for se in store.iter_entries():
                for lv, ix, h in merkle.nodes_after_append(
                    se.entry.seq, se.hash, lambda a, b: nodes[(a, b)]
                ):
                    nodes[(lv, ix)] = h
                    conn.execute("INSERT INTO nodes VALUES (?,?,?)", (lv, ix, h))
        conn.close()
        r = store.verify(key.verifier)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 8, "CheckpointError")


def test_swapped_rows_are_caught(ledger_db: Path, key: SignerKey) -> None:
    conn = sqlite3.connect(ledger_db)
    rows = {s: r for s, *r in conn.execute("SELECT seq, leaf, hash, sig FROM entries")}
    with conn:
        for a, b in ((3, 7), (7, 3)):
            conn.execute("UPDATE entries SET leaf=?, hash=?, sig=? WHERE seq=?", (*rows[b], a))
    conn.close()
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 3, "ChainError")


def test_resigned_with_another_key_is_caught(ledger_db: Path, key: SignerKey) -> None:
    forger = SignerKey.generate(SITE)
    entry = SignedEntry(_leaf(ledger_db, 4), b"").entry
    body = dict(entry.body, gross_kg=20000)
    forged = sign_entry(
        Entry(site=entry.site, seq=4, ts=entry.ts, kind=entry.kind, body=body, prev=entry.prev),
        forger,
    )
    _sql(ledger_db, ("UPDATE entries SET leaf=?, hash=?, sig=? WHERE seq=4",
                     (forged.leaf, forged.hash, forged.sig)))
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 4, "SignatureError")


def test_history_rewritten_with_the_site_key_is_caught_by_the_checkpoint(
    ledger_db: Path, key: SignerKey, tmp_path: Path
) -> None:
    # An insider with the site key rebuilds the whole log with one weight lowered.
    rebuilt = tmp_path / "rebuilt.db"
    with LedgerStore.open(ledger_db) as old, LedgerStore.open(
        rebuilt, site=SITE, signer=key
    ) as new:
        for se in old.iter_entries():
            body = dict(se.entry.body)
            if se.entry.seq == 4:
                body["gross_kg"] = 20000
            new.append(se.entry.kind, body, ts=se.entry.ts)
        checkpoint = old.checkpoints()[0]
    _sql(rebuilt, ("INSERT INTO checkpoints(size, note) VALUES (?, ?)", (10, checkpoint)))
    r = _verify(rebuilt, key)
    assert (r.ok, r.error_type) == (False, "CheckpointError")
    assert "rewritten" in (r.problem or "")


def test_tampered_merkle_node_is_caught(ledger_db: Path, key: SignerKey) -> None:
    _sql(ledger_db, ("UPDATE nodes SET hash = ? WHERE level = 1 AND idx = 2", (bytes(32),)))
    r = _verify(ledger_db, key)
    assert (r.ok, r.first_bad_seq, r.error_type) == (False, 5, "StoreError")


def test_forged_checkpoint_is_caught(ledger_db: Path, key: SignerKey) -> None:
    note = sign_checkpoint_for(SignerKey.generate(SITE), 10, bytes(32))
    _sql(ledger_db, ("INSERT INTO checkpoints(size, note) VALUES (10, ?)", (note,)))
    r = _verify(ledger_db, key)
    assert (r.ok, r.error_type) == (False, "CheckpointError")


def sign_checkpoint_for(signer: SignerKey, size: int, root: bytes) -> str:
    from ledger.checkpoint import Checkpoint, sign_checkpoint

    return sign_checkpoint(Checkpoint("coalgate/mine-a", size, root), signer)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_file_is_caught(ledger_db: Path, key: SignerKey, keep: float) -> None:
    # Make the file big enough to span many pages, and fold the WAL into it first.
    with LedgerStore.open(ledger_db, site=SITE, signer=key) as store:
        store.append_batch([("weighing", _weighing(i)) for i in range(400)])
    conn = sqlite3.connect(ledger_db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = ledger_db.read_bytes()
    ledger_db.write_bytes(data[: int(len(data) * keep)])
    try:
        store = LedgerStore.open(ledger_db)
    except StoreError:
        return  # refusing to open a damaged file is a specific failure too
    with store:
        r = store.verify(key.verifier)
    assert not r.ok and r.problem


def test_wire_export_matches_store(ledger_db: Path) -> None:
    with LedgerStore.open(ledger_db) as store:
        wire = [se.to_wire() for se in store.iter_entries()]
    assert json.loads(wire[0]["leaf"])["seq"] == 0
    assert base64.b64decode(wire[1]["hash"]) == merkle.leaf_hash(wire[1]["leaf"].encode())


def test_file_left_by_a_crash_during_creation_is_created_again(tmp_path: Path, key) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"")  # created, then killed before the schema transaction committed
    with pytest.raises(StoreError, match="no ledger here"):
        LedgerStore.open(path)
    with LedgerStore.open(path, site=SITE, signer=key) as store:
        store.append("config", {})
    assert _verify(path, key).ok
