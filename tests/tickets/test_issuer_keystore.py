"""Issuer signing keys live outside PostgreSQL (issue 12 item 6): in 0600 key files or an
encrypted key store. After creating keys and issuing tickets no database table holds a
private key; keys of an older database move out on first use; rotation keeps old tickets."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from central.tickets import issuers, service
from central.tickets.keystore import (
    EncryptedFileKeyStore,
    FileKeyStore,
    IssuerKeyStoreError,
    move_db_keys_to_store,
)
from ledger.keys import SignerKey
from ledger.private_file import is_private
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
        yield url
    finally:
        drop()


def _secrets(key: SignerKey) -> list[str]:
    """Every spelling of the key's private half that could sit in a row."""
    seed = key.seed
    # PRIVATE+KEY+<name>+<keyid>+<base64>: the base64 may itself hold '+', so split from the left
    b64 = key.to_text().split("+", 4)[4]
    assert len(b64) == 44, b64
    return [key.to_text(), b64, base64.b64encode(seed).decode(),
            seed.hex(), base64.urlsafe_b64encode(seed).decode().rstrip("=")]


def _database_text(conn: psycopg.Connection) -> str:
    """Every row of every table in the public schema, as text."""
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_type = 'BASE TABLE'")]
    assert "ticket_issuer_keys" in tables and "tickets" in tables
    parts = []
    for table in tables:
        rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608
        parts += [r[0] for r in rows]
    return "\n".join(parts)


def _issue(conn: psycopg.Connection, store: FileKeyStore, n: int) -> list[str]:
    out = []
    for i in range(n):
        req = service.IssueRequest(enterprise=ENT_A, site="S61082101", plate=f"陕K{i}A000",
                                   buyer="甲", destination="乙", coal_type="块煤",
                                   planned_net_kg=30_000)
        out.append(service.issue(conn, req, who="office", now=datetime.now(UTC),
                                 issuer_keys=store).qr)
    return out


@pytest.mark.parametrize("encrypted", [False, True])
def test_no_private_key_in_any_table_after_issuing(url: str, tmp_path: Path,
                                                   encrypted: bool) -> None:
    store = (EncryptedFileKeyStore(tmp_path / "keys", b"correct horse battery staple")
             if encrypted else FileKeyStore(tmp_path / "keys"))
    with psycopg.connect(url, autocommit=True) as conn:
        first = issuers.create_issuer_key(conn, ENT_A, ROOT, now=datetime.now(UTC), store=store)
        assert len(_issue(conn, store, 3)) == 3
        # rotation: a new key from now; the old one stays in the store for its tickets' sake
        second = issuers.create_issuer_key(conn, ENT_A, ROOT,
                                           now=datetime.now(UTC) + timedelta(seconds=2),
                                           store=store)
        dump = _database_text(conn)
    keys = [store.get(first.kid), store.get(second.kid)]
    for key in keys:
        for secret in _secrets(key):
            assert secret not in dump, "a private key is in the database"
        path = store.path(key.key_id.hex())
        assert is_private(path) and is_private(path.parent)
        on_disk = path.read_text()
        assert (key.to_text() in on_disk) is not encrypted
    assert keys[0].verifier.to_text() == first.verifier_key


def test_keys_of_an_older_database_move_out_on_first_use(url: str, tmp_path: Path) -> None:
    legacy = SignerKey.generate(ENT_A)
    store = FileKeyStore(tmp_path / "keys")
    with psycopg.connect(url, autocommit=True) as conn:
        # a row as the central wrote it before migration 016: the private key in the table
        conn.execute(
            "INSERT INTO ticket_issuer_keys (kid, enterprise, verifier_key, signer_key,"
            " not_before) VALUES (%s, %s, %s, %s, %s)",
            (legacy.key_id.hex(), ENT_A, legacy.verifier.to_text(), legacy.to_text(),
             datetime.now(UTC) - timedelta(hours=1)))
        issuers.publish_trust_list(conn, ROOT, now=datetime.now(UTC))
        signed = _issue(conn, store, 1)
        assert signed and store.get(legacy.key_id.hex()).to_text() == legacy.to_text()
        assert conn.execute("SELECT count(*) FROM ticket_issuer_keys"
                            " WHERE signer_key IS NOT NULL").fetchone() == (0,)
        assert legacy.to_text() not in _database_text(conn)
        assert move_db_keys_to_store(conn, store) == 0  # idempotent


def test_store_refuses_wrong_passphrase_and_open_files(tmp_path: Path) -> None:
    key = SignerKey.generate(ENT_A)
    kid = key.key_id.hex()
    EncryptedFileKeyStore(tmp_path / "enc", b"correct horse battery staple").put(kid, key)
    with pytest.raises(IssuerKeyStoreError, match="wrong passphrase"):
        EncryptedFileKeyStore(tmp_path / "enc", b"wrong horse battery staple").get(kid)
    plain = FileKeyStore(tmp_path / "plain")
    plain.put(kid, key)
    plain.path(kid).chmod(0o644)
    with pytest.raises(IssuerKeyStoreError, match="chmod 600"):
        plain.get(kid)
    with pytest.raises(IssuerKeyStoreError, match="restore it"):
        plain.get("00000000")
