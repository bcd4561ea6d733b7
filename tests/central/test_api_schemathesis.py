"""Schemathesis against the central's own OpenAPI document, for every role (issue 12): every
operation of the production app (core API, e-tickets, driver pages) is called with generated
valid and invalid input, by a token of each role of central.auth, on a real uvicorn server and a
throwaway PostgreSQL holding a site, a ticket and weighings. No call may end in a server error.

Bounded: ``EXAMPLES`` cases per operation and role (a couple of minutes on two cores). Each
role and operation gets a fresh token, so an admin case that revokes tokens (DELETE
/tokens/{id}) cannot turn the rest of the run into 401s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from central.auth import ROLES
from central.tickets.settings import TicketSettings
from ledger.keys import SignerKey
from tests.support.api_server import Server
from tests.support.http import auth
from tests.support.pg import make_database
from tests.tickets.central_support import ENT_A, Gate, make_ingestor, make_token, ticket_app

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
WITNESS = SignerKey("coalgate-central", bytes(range(50, 82)))
# Cases per operation and role; COALGATE_SCHEMATHESIS_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("COALGATE_SCHEMATHESIS_EXAMPLES", "25"))


@dataclass
class Env:
    url: str
    base: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    url, drop = make_database()
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    app = ticket_app(url, TicketSettings(root_key=ROOT, witness=WITNESS.verifier))
    try:
        with Server(app) as server, psycopg.connect(url, autocommit=True) as conn:
            gate = Gate("S61082101", tmp, ENT_A)
            gate.enrol(conn)
            bureau = make_token(url, "bureau")
            r = httpx.post(f"{server.base}/api/v1/tickets/issuer-keys",
                           json={"enterprise": ENT_A}, headers=auth(bureau))
            assert r.status_code == 201, r.text
            r = httpx.post(f"{server.base}/api/v1/tickets", headers=auth(
                make_token(url, "enterprise", ENT_A)), json={
                "site": gate.site, "plate": "陕K8A3B2", "buyer": "鑫源兰炭",
                "destination": "保德县", "coal_type": "洗混煤", "planned_net_kg": 34000})
            assert r.status_code == 201, r.text
            gate.config(ticket_required=True)
            gate.load("陕K8A3B2", r.json()["ticket_id"])
            gate.load("陕K12345", None)
            with psycopg.connect(url) as ingest_conn:
                gate.push(make_ingestor(ingest_conn, WITNESS))
                gate.checkpoint(make_ingestor(ingest_conn, WITNESS))
            gate.close()
            yield Env(url, server.base)
    finally:
        drop()


def _operations(base: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    ops = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the central's OpenAPI document is invalid: {result.err()}")
        ops.append(result.ok())
    assert len(ops) >= 20, [op.label for op in ops]
    return ops


def _fuzz(env: Env, role: str, op: Any, failures: list[str], statuses: dict[int, int]) -> None:
    """``EXAMPLES`` generated cases of one operation with a fresh token of ``role``."""
    headers = auth(make_token(env.url, role, ENT_A if role == "enterprise" else None))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],  # no shrinking: report, go on
              suppress_health_check=list(HealthCheck))
    # Valid input and invalid input (schema-violating values, types, missing fields).
    @given(case=st.one_of(op.as_strategy(GenerationMode.POSITIVE),
                          op.as_strategy(GenerationMode.NEGATIVE)))
    def run(case: Any) -> None:
        if op.path.endswith("/stream"):
            # The live alarm stream never ends by itself: its status and headers only.
            sent = case.as_transport_kwargs(base_url=env.base, headers=headers)
            with httpx.stream(sent["method"], sent["url"], params=sent.get("params"),
                              headers=sent["headers"], timeout=30) as streamed:
                code = streamed.status_code
            statuses[code] = statuses.get(code, 0) + 1
            if code >= 500:
                failures.append(f"{role} {op.label}: {code} {sent}")
            return
        response = case.call(base_url=env.base, headers=headers, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:  # collect them all, then fail once with the list
            failures.append(f"{role} {op.label}: {response.status_code} "
                            f"{case.as_curl_command(headers=headers)}\n{str(exc)[:500]}")

    run()


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_no_server_errors_for_any_role(env: Env, role: str) -> None:
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for op in _operations(env.base):
        _fuzz(env, role, op, failures, statuses)
    print(f"{role}: responses by status {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(failures[:20])
    # Not every call was refused at the door: the role reached its endpoints.
    assert sum(n for code, n in statuses.items() if code < 300) > 0, statuses
