from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.keys import SignerKey
from ledger.ticket import Ticket, issue_ticket
from ledger.trust import TrustList
from tests.support.pg import pg_url

__all__ = ["pg_url"]  # the throwaway-database fixture, for the ticket tests

T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
ISSUER = "E610821001"
SITE = "S61082101"


def shared_dir() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared"
    assert (path / "testvectors").is_dir(), f"shared test vectors not found at {path}"
    return path


def typical_ticket(**changes: object) -> Ticket:
    fields: dict[str, object] = dict(
        ticket_id="T2611050123",
        issuer=ISSUER,
        site=SITE,
        plate="陕K8A3B2",
        buyer="鑫源兰炭",
        destination="保德县",
        coal_type="洗混煤",
        planned_net_kg=34500,
        quota_period="2026-11",
        valid_from=T0,
        valid_to=T0 + timedelta(hours=48),
        issued_at=T0,
    )
    fields.update(changes)
    return Ticket(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def issuer_key() -> SignerKey:
    return SignerKey(ISSUER, bytes(range(32)))


@pytest.fixture(scope="session")
def root_key() -> SignerKey:
    return SignerKey("bureau-root", bytes(range(100, 132)))


@pytest.fixture(scope="session")
def trust(issuer_key: SignerKey) -> TrustList:
    epoch = T0 - timedelta(days=365)
    return TrustList(1, epoch, ()).add_key(ISSUER, issuer_key.verifier, epoch, now=epoch)


@pytest.fixture(scope="session")
def ticket_text(issuer_key: SignerKey) -> str:
    return issue_ticket(typical_ticket(), issuer_key)


@pytest.fixture(scope="session", autouse=True)
def _issuer_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Issuer keys made by library calls without an explicit store go to a throwaway
    directory (central.tickets.keystore.default_store), not the checkout's var/."""
    from central.tickets.keystore import KEY_DIR_ENV

    path = tmp_path_factory.mktemp("issuer-keys")
    old = os.environ.get(KEY_DIR_ENV)
    os.environ[KEY_DIR_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(KEY_DIR_ENV, None)
    else:
        os.environ[KEY_DIR_ENV] = old
