"""Benchmark: e-ticket issuance and reconciliation at the central (real PostgreSQL).

Measures, in one run:
- baseline: ``issue_ticket`` alone (CBOR, COSE, Ed25519 sign, base45) — the cost no issuance
  path can avoid — against ``service.issue`` (quota lock and status, key lookup, sign, QR size
  check, insert, outbox delta; one transaction each, policy ``enforce``);
- baseline: ``central.projections.apply`` for batches of 100 loaded weighings with tickets,
  against the same plus ``central.tickets.reconcile.apply`` (the ingest hook with tickets).
Prints JSON with rates and ratios.

Usage: .venv/bin/python scripts/bench_central_tickets.py [--seconds 3]
       (needs PostgreSQL at 127.0.0.1:5432, db test, user postgres; a throwaway db is used)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central import projections  # noqa: E402
from central.api.schemas import SiteIn  # noqa: E402
from central.db import migrate  # noqa: E402
from central.sites import enrol_site  # noqa: E402
from central.tickets import issuers, reconcile, service  # noqa: E402
from ledger.keys import SignerKey  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402
from ledger.ticket import Ticket, default_quota_period, issue_ticket  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
ENT = "E610821001"
SITE = "S61082101"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    name = "coalgate_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        print(json.dumps(run(url, args.seconds), indent=2))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, seconds: float) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    site_key = SignerKey.generate(SITE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        enrol_site(conn, SiteIn(id=SITE, enterprise=ENT, name="bench",
                                verifier_key=site_key.verifier.to_text()))
        issuers.create_issuer_key(conn, ENT, SignerKey.generate("root"), now=now)
        service.set_capacity(conn, ENT, default_quota_period(now), 10**15, "bench")
        service.set_policy(conn, ENT, "enforce", "bench")
        signer = issuers.active_signer(conn, ENT, now=now)

        ticket = Ticket("T2611050123", ENT, SITE, "陕K8A3B2", "鑫源兰炭", "保德县", "洗混煤",
                        34500, default_quota_period(now), now, now + timedelta(hours=48), now)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            issue_ticket(ticket, signer)
            n += 1
        sign_rate = n / (time.perf_counter() - start)

        req = service.IssueRequest(ENT, SITE, "陕K8A3B2", "鑫源兰炭", "保德县", "洗混煤", 34500)
        ids: list[str] = []
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            ids.append(service.issue(conn, req, who="bench", now=now).id)
            n += 1
        issue_rate = n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore.open(Path(tmp) / "l.sqlite", site=SITE, signer=site_key)
        batch = 100
        rounds = max(2, min(len(ids) // batch, 20))
        for i in range(rounds * batch):
            store.append("weighing", {
                "txn": f"{SITE}-x-{i}", "pass": "gross", "plate": "陕K8A3B2", "axles": 6,
                "weight_kg": 49000, "gross_kg": 49000, "tare_kg": 15000, "net_kg": 34000,
                "ticket_id": ids[i % len(ids)], "limit_kg": 49000, "decision": "release",
                "reasons": []})
        entries = [se.entry for se in store.iter_entries(0)]
        store.close()
    half = rounds // 2
    timings: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        for label, chunk_range, both in (("projections", range(0, half), False),
                                         ("projections+reconcile", range(half, rounds), True)):
            start = time.perf_counter()
            for r in chunk_range:
                chunk = entries[r * batch:(r + 1) * batch]
                with conn.transaction(), conn.cursor() as cur:
                    projections.apply(cur, SITE, chunk)
                    if both:
                        reconcile.apply(cur, SITE, chunk)
            timings[label] = len(chunk_range) * batch / (time.perf_counter() - start)
    return {
        "issue_ticket_sign_only_per_s": round(sign_rate, 1),
        "service_issue_per_s": round(issue_rate, 1),
        "issue_ratio_to_baseline": round(issue_rate / sign_rate, 4),
        "weighings_per_s_projections_only": round(timings["projections"], 1),
        "weighings_per_s_with_reconcile": round(timings["projections+reconcile"], 1),
        "reconcile_ratio_to_baseline": round(
            timings["projections+reconcile"] / timings["projections"], 3),
        "batch": batch,
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
