"""Issuer keys and the published trust list (docs/tickets.md §4), the data layer.

The central signs tickets for an enterprise's sales office with that enterprise's issuer key.
Creating a key for an enterprise that has one is a rotation: the old key gets a not-after of
now (its tickets stay valid until they expire) and the new one covers tickets issued from now.
Removing a key (compromise) drops it from the trust list, which voids its tickets at the gates.
Every change publishes a new trust list (serial + 1), signed by the bureau's trust-root key, and
queues it for every enrolled gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from central.tickets.errors import (
    IssuerKeyNotFoundError,
    NoIssuerKeyError,
    TicketInputError,
    TrustRootMissingError,
)
from central.tickets.keystore import IssuerKeyStore, default_store
from ledger.keys import SignerKey, VerifierKey
from ledger.trust import IssuerKey, TrustList

__all__ = [
    "ENTERPRISE_ID",
    "IssuerKeyRow",
    "check_enterprise_id",
    "create_issuer_key",
    "remove_issuer_key",
    "list_issuer_keys",
    "active_signer",
    "build_trust_list",
    "publish_trust_list",
    "current_trust_list",
]

# The ticket's iss claim: an id, not a name (ledger.ticket validates the same pattern).
ENTERPRISE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")


def check_enterprise_id(enterprise: str) -> None:
    if not ENTERPRISE_ID.fullmatch(enterprise):
        raise TicketInputError(
            f"enterprise {enterprise!r} is not usable as a ticket issuer id: it must be 1-64 of "
            "A-Z a-z 0-9 . _ / - (e.g. the credit code or E610821001), not a company name; "
            "enrol the enterprise's sites under such an id"
        )


@dataclass(frozen=True)
class IssuerKeyRow:
    kid: str
    enterprise: str
    verifier_key: str
    not_before: datetime
    not_after: datetime | None
    removed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        def ts(dt: datetime | None) -> str | None:
            return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {"kid": self.kid, "enterprise": self.enterprise,
                "verifier_key": self.verifier_key, "not_before": ts(self.not_before),
                "not_after": ts(self.not_after), "removed_at": ts(self.removed_at)}


_KEY_COLUMNS = "kid, enterprise, verifier_key, not_before, not_after, removed_at"


def list_issuer_keys(
    conn: psycopg.Connection[Any], enterprise: str | None = None
) -> list[IssuerKeyRow]:
    sql = f"SELECT {_KEY_COLUMNS} FROM ticket_issuer_keys"
    args: list[Any] = []
    if enterprise is not None:
        sql += " WHERE enterprise = %s"
        args.append(enterprise)
    rows = conn.execute(sql + " ORDER BY enterprise, not_before", args).fetchall()
    return [IssuerKeyRow(*r) for r in rows]


def create_issuer_key(
    conn: psycopg.Connection[Any], enterprise: str, root: SignerKey | None, *, now: datetime,
    max_validity_days: int = 31, store: IssuerKeyStore | None = None,
) -> IssuerKeyRow:
    """A new issuer key for ``enterprise``, covering tickets issued from ``now``; its current
    key (if any) is retired at ``now``. Publishes the new trust list.

    The private key goes to ``store`` (default: central.tickets.keystore.default_store()),
    written before the row exists, so no row ever names a key that was not kept; the database
    keeps only its public half."""
    check_enterprise_id(enterprise)
    if root is None:
        raise _no_root()
    signer = SignerKey.generate(enterprise)
    (store or default_store()).put(signer.key_id.hex(), signer)
    now = now.astimezone(UTC).replace(microsecond=0)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ticket_issuer_keys'))")
        row = conn.execute(
            "SELECT max(not_before) FROM ticket_issuer_keys WHERE enterprise = %s"
            " AND removed_at IS NULL", (enterprise,)).fetchone()
        # Whole seconds (ticket iat); a second rotation within the same second waits for the
        # next one, so exactly one key covers any issue time.
        start = now if row is None or row[0] is None or row[0] < now else (
            row[0] + timedelta(seconds=1))
        conn.execute(
            "UPDATE ticket_issuer_keys SET not_after = %s WHERE enterprise = %s"
            " AND removed_at IS NULL AND (not_after IS NULL OR not_after > %s)",
            (start, enterprise, start),
        )
        conn.execute(
            "INSERT INTO ticket_issuer_keys (kid, enterprise, verifier_key, not_before)"
            " VALUES (%s, %s, %s, %s)",
            (signer.key_id.hex(), enterprise, signer.verifier.to_text(), start),
        )
        publish_trust_list(conn, root, now=now, max_validity_days=max_validity_days)
    return IssuerKeyRow(signer.key_id.hex(), enterprise, signer.verifier.to_text(), start,
                        None, None)


def remove_issuer_key(
    conn: psycopg.Connection[Any], kid: str, root: SignerKey | None, *, now: datetime,
    max_validity_days: int = 31,
) -> IssuerKeyRow:
    """Take a (compromised) key out of the trust list: its tickets become unknown_issuer."""
    if root is None:
        raise _no_root()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ticket_issuer_keys'))")
        row = conn.execute(
            f"UPDATE ticket_issuer_keys SET removed_at = coalesce(removed_at, %s)"
            f" WHERE kid = %s RETURNING {_KEY_COLUMNS}",
            (now, kid),
        ).fetchone()
        if row is None:
            raise IssuerKeyNotFoundError(
                f"no issuer key with id {kid!r}; list them with GET /api/v1/tickets/issuer-keys"
            )
        publish_trust_list(conn, root, now=now, max_validity_days=max_validity_days)
    return IssuerKeyRow(*row)


def active_signer(
    conn: psycopg.Connection[Any], enterprise: str, *, now: datetime,
    store: IssuerKeyStore | None = None,
) -> SignerKey:
    """The enterprise's key that covers tickets issued at ``now``, read from ``store``. A key
    still in the database (before migration 016) is moved into the store first."""
    store = store or default_store()
    row = conn.execute(
        "SELECT kid, signer_key FROM ticket_issuer_keys WHERE enterprise = %s"
        " AND removed_at IS NULL"
        " AND not_before <= %s AND (not_after IS NULL OR not_after > %s)"
        " ORDER BY not_before DESC LIMIT 1",
        (enterprise, now, now),
    ).fetchone()
    if row is None:
        raise NoIssuerKeyError(
            f"enterprise {enterprise!r} has no issuer key valid now, so no ticket can be "
            "signed; the energy bureau creates one with POST /api/v1/tickets/issuer-keys "
            f'{{"enterprise": "{enterprise}"}}'
        )
    kid, legacy = row
    if legacy is not None:
        from central.tickets.keystore import move_db_keys_to_store

        move_db_keys_to_store(conn, store)
    return store.get(kid)


def build_trust_list(
    conn: psycopg.Connection[Any], serial: int, *, now: datetime, max_validity_days: int = 31
) -> TrustList:
    rows = conn.execute(
        "SELECT enterprise, verifier_key, not_before, not_after FROM ticket_issuer_keys"
        " WHERE removed_at IS NULL ORDER BY enterprise, not_before, kid"
    ).fetchall()
    keys = tuple(IssuerKey(r[0], VerifierKey.from_text(r[1]), r[2], r[3]) for r in rows)
    return TrustList(serial, now, keys, max_validity_days)


def publish_trust_list(
    conn: psycopg.Connection[Any], root: SignerKey, *, now: datetime,
    max_validity_days: int = 31,
) -> tuple[int, str]:
    """Sign and store the next trust list and queue it for every enrolled gate."""
    from central.tickets.distribution import enqueue_all_sites

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ticket_trust_lists'))")
        row = conn.execute("SELECT coalesce(max(serial), 0) FROM ticket_trust_lists").fetchone()
        serial = (row[0] if row else 0) + 1
        note = build_trust_list(conn, serial, now=now,
                                max_validity_days=max_validity_days).sign([root])
        conn.execute("INSERT INTO ticket_trust_lists (serial, note, issued_at)"
                     " VALUES (%s, %s, %s)", (serial, note, now))
        enqueue_all_sites(conn, {"type": "trust", "note": note})
    return serial, note


def current_trust_list(conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT serial, note FROM ticket_trust_lists ORDER BY serial DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _no_root() -> TrustRootMissingError:
    return TrustRootMissingError(
        "no trust-root signer key is configured, so the issuer trust list cannot be signed; "
        "create one with `coalgate ledger keygen --name bureau-root --out FILE`, keep it mode "
        "0600 and name it in the central config: [tickets] root_key_file = \"FILE\""
    )
