#!/usr/bin/env python3
"""Ledger benchmark: durable appends, full verify, proofs at 1,000,000 entries.

Prints JSON. Each ledger figure is paired with a baseline measured in the same run: plain
SQLite inserts of the same leaf rows (same WAL + synchronous=FULL settings, same commit
pattern) without canonicalising, hashing, signing or Merkle nodes. Not a test: figures depend
on the machine. Usage:

    .venv/bin/python scripts/bench_ledger.py [--big 1000000] [--single 2000] [--batches 200]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import merkle  # noqa: E402
from ledger.keys import SignerKey  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402

SITE = "mine-a"


def body(i: int) -> dict[str, object]:
    """A realistic weighing body (about 400 bytes of canonical JSON per entry)."""
    return {
        "txn": f"{SITE}-20261128-{i}", "pass": "gross", "plate": "陕K12345", "plate_conf_pm": 987,
        "plate_source": "anpr", "axles": 6, "weight_kg": 48960, "gross_kg": 48960,
        "tare_kg": 16020, "net_kg": 32940, "tare_source": "measured", "tare_seq": i - 3,
        "ticket_id": f"T{i:08d}", "limit_kg": 49000, "decision": "release", "reasons": [],
        "stable_ms": 3200, "snapshot_sha256": None,
    }


def baseline_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, leaf BLOB, hash BLOB, sig BLOB)")
    return conn


def rate(n: int, fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_appends(tmp: Path, key: SignerKey, single: int, batches: int) -> dict[str, object]:
    # Rows for the baseline: the same leaf bytes the ledger writes, with dummy hash/sig blobs.
    with LedgerStore.open(tmp / "rows.db", site=SITE, signer=key) as store:
        rows = [se.leaf for se in store.append_batch([("weighing", body(i)) for i in range(100)])]
    dummy = bytes(32), bytes(64)

    def plain_single() -> None:
        conn = baseline_db(tmp / "plain1.db")
        for i in range(single):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO entries VALUES (?,?,?,?)", (i, rows[i % 100], *dummy))
            conn.execute("COMMIT")
        conn.close()

    def plain_batches() -> None:
        conn = baseline_db(tmp / "plain100.db")
        for b in range(batches):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO entries VALUES (?,?,?,?)",
                             [(b * 100 + i, rows[i], *dummy) for i in range(100)])
            conn.execute("COMMIT")
        conn.close()

    def ledger_single() -> None:
        with LedgerStore.open(tmp / "l1.db", site=SITE, signer=key) as store:
            for i in range(single):
                store.append("weighing", body(i))

    def ledger_batches() -> None:
        with LedgerStore.open(tmp / "l100.db", site=SITE, signer=key) as store:
            for b in range(batches):
                store.append_batch([("weighing", body(b * 100 + i)) for i in range(100)])

    base1, led1 = rate(single, plain_single), rate(single, ledger_single)
    base100, led100 = rate(batches * 100, plain_batches), rate(batches * 100, ledger_batches)
    with LedgerStore.open(tmp / "l100.db") as store:
        n = store.size
        verify_rate = rate(n, lambda: _must_verify(store, key))
    return {
        "append_single_per_s": round(led1),
        "baseline_plain_insert_single_per_s": round(base1),
        "append_single_ratio": round(led1 / base1, 3),
        "append_batch100_per_s": round(led100),
        "baseline_plain_insert_batch100_per_s": round(base100),
        "append_batch100_ratio": round(led100 / base100, 3),
        "verify_entries": n,
        "verify_entries_per_s": round(verify_rate),
    }


def _must_verify(store: LedgerStore, key: SignerKey) -> None:
    report = store.verify(key.verifier)
    if not report.ok:
        raise SystemExit(f"benchmark ledger failed to verify: {report.problem}")


def bench_big(tmp: Path, key: SignerKey, big: int) -> dict[str, object]:
    path = tmp / "big.db"
    chunk = 10_000
    t0 = time.perf_counter()
    with LedgerStore.open(path, site=SITE, signer=key) as store:
        for start in range(0, big, chunk):
            stop = min(big, start + chunk)
            store.append_batch([("weighing", body(i)) for i in range(start, stop)])
    build_s = time.perf_counter() - t0

    rng = random.Random(1)
    with LedgerStore.open(path) as store:
        size = store.size
        root = store.root()
        samples = []
        for _ in range(1000):
            seq = rng.randrange(size)
            t = time.perf_counter()
            proof = store.inclusion_proof(seq)
            samples.append(time.perf_counter() - t)
            merkle.verify_inclusion(seq, size, store.get(seq).hash, proof, root)
        csamples = []
        for _ in range(200):
            old = rng.randrange(1, size)
            t = time.perf_counter()
            store.consistency_proof(old)
            csamples.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(100):
            store.root(rng.randrange(1, size + 1))
        root_ms = (time.perf_counter() - t) * 1000 / 100
    # Baseline for the proof: a scan of every stored leaf hash, which is what a store without
    # Merkle nodes would have to read to build any proof or root.
    conn = sqlite3.connect(path)
    t = time.perf_counter()
    scanned = sum(1 for _ in conn.execute("SELECT hash FROM entries ORDER BY seq"))
    scan_ms = (time.perf_counter() - t) * 1000
    conn.close()
    proof_ms = statistics.median(samples) * 1000
    return {
        "big_entries": size,
        "big_build_s": round(build_s, 1),
        "big_build_entries_per_s": round(size / build_s),
        "big_db_mb": round(path.stat().st_size / 2**20, 1),
        "inclusion_proof_median_ms": round(proof_ms, 3),
        "inclusion_proof_p99_ms": round(sorted(samples)[989] * 1000, 3),
        "consistency_proof_median_ms": round(statistics.median(csamples) * 1000, 3),
        "root_at_random_size_ms": round(root_ms, 3),
        "baseline_scan_all_leaf_hashes_ms": round(scan_ms, 1),
        "baseline_scanned_rows": scanned,
        "proof_vs_scan_ratio": round(proof_ms / scan_ms, 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="coalgate ledger benchmark")
    parser.add_argument("--single", type=int, default=2000, help="appends one at a time")
    parser.add_argument("--batches", type=int, default=200, help="batches of 100 appends")
    parser.add_argument("--big", type=int, default=1_000_000, help="entries for the proof bench")
    args = parser.parse_args()
    key = SignerKey.generate(SITE)
    with tempfile.TemporaryDirectory(prefix="coalgate-bench-") as d:
        tmp = Path(d)
        result: dict[str, object] = {"bench": "ledger"}
        result.update(bench_appends(tmp, key, args.single, args.batches))
        result.update(bench_big(tmp, key, args.big))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
