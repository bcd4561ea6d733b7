"""Benchmark: e-ticket verification at the gate.

Measures, in one run, a bare Ed25519 verify of the same Sig_structure (the baseline: the cost
no implementation can avoid), ``verify_ticket`` (prefix, base45, COSE, CWT, trust list,
signature) and ``GateTicketVerifier.check`` (plus SQLite revocation/use look-ups), and prints
JSON with per-operation times and ratios to the baseline.

Usage: .venv/bin/python scripts/bench_tickets.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.tickets import GateTicketVerifier
from ledger.keys import SignerKey
from ledger.ticket import Ticket, issue_ticket, parse_ticket, verify_ticket
from ledger.trust import TrustList


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    t0 = datetime(2026, 11, 5, 8, tzinfo=UTC)
    issuer, root = SignerKey.generate("E610821001"), SignerKey.generate("bureau-root")
    ticket = Ticket("T2611050123", "E610821001", "S61082101", "陕K8A3B2", "鑫源兰炭", "保德县",
                    "洗混煤", 34500, "2026-11", t0, t0 + timedelta(hours=48), t0)
    text = issue_ticket(ticket, issuer)
    trust = TrustList(1, t0, ()).add_key("E610821001", issuer.verifier, t0, now=t0)
    parsed = parse_ticket(text)
    tbs, sig = parsed.sign1.to_be_signed(), parsed.sign1.signature
    with tempfile.TemporaryDirectory() as tmp:
        gate = GateTicketVerifier("S61082101", Path(tmp) / "t.db", trust_roots=[root.verifier])
        gate.apply_delta({"type": "trust", "note": trust.sign([root])}, now=t0)
        # a realistic store: many revocations
        gate.store.revoke_many([(f"R{i}", t0, "voided") for i in range(10_000)])
        now = t0 + timedelta(hours=1)
        baseline = rate(lambda: issuer.verifier.verify(tbs, sig), args.seconds)
        verify = rate(lambda: verify_ticket(text, trust, now=now), args.seconds)
        check = rate(lambda: gate.check(text, plate="陕K8A3B2", now=now), args.seconds)
        issue = rate(lambda: issue_ticket(ticket, issuer), args.seconds)
        gate.close()
    print(json.dumps({
        "benchmark": "tickets",
        "ticket_chars": len(text),
        "baseline_ed25519_verify_per_s": round(baseline),
        "verify_ticket_per_s": round(verify),
        "gate_check_per_s": round(check),
        "issue_ticket_per_s": round(issue),
        "verify_ticket_us": round(1e6 / verify, 1),
        "gate_check_us": round(1e6 / check, 1),
        "ratio_verify_ticket_to_baseline": round(baseline / verify, 2),
        "ratio_gate_check_to_baseline": round(baseline / check, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
