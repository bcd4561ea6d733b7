"""The central ticket data layer under concurrency, against a real PostgreSQL: quota under
`enforce` holds when several sales offices issue at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from central.tickets import issuers, service
from central.tickets.errors import QuotaRefusedError
from ledger.keys import SignerKey
from ledger.ticket import default_quota_period
from tests.support.pg import make_database
from tests.tickets.central_support import ENT_A, Gate

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url, drop = make_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            gate = Gate("S61082101", tmp_path, ENT_A)
            gate.enrol(conn)
            gate.close()
            issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC))
            service.set_capacity(conn, ENT_A, default_quota_period(datetime.now(UTC)),
                                 100_000, "bureau")
            service.set_policy(conn, ENT_A, "enforce", "bureau")
        yield url
    finally:
        drop()


def test_concurrent_issuance_never_passes_the_quota_under_enforce(url: str) -> None:
    issued: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def office(n: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                start.wait()
                for i in range(3):
                    req = service.IssueRequest(
                        enterprise=ENT_A, site="S61082101", plate=f"陕K{n}{i}000",
                        buyer="甲", destination="乙", coal_type="块煤", planned_net_kg=9_000)
                    try:
                        issued.append(service.issue(conn, req, who=f"office{n}",
                                                    now=datetime.now(UTC)).id)
                    except QuotaRefusedError as exc:
                        refused.append(str(exc))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=office, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # 100 t of capacity holds 11 tickets of 9 t; the 13 others are refused, none slip through.
    assert (len(issued), len(refused)) == (11, 13)
    assert len(set(issued)) == 11
    with psycopg.connect(url) as conn:
        q = service.quota_status(conn, ENT_A, default_quota_period(datetime.now(UTC)),
                                 now=datetime.now(UTC))
    assert q.status.reserved_kg == 99_000 and q.status.issued == 11
