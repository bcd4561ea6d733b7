"""Bearer tokens and roles for the central API.

A token is ``cgt_`` + 43 characters of URL-safe base64 (256 random bits). Only its SHA-256 is
stored; the token is shown once, when it is created. Because tokens are random and long, a
fast hash is enough: there is nothing to brute-force that is cheaper than guessing 256 bits.

Roles: ``admin`` (everything, enrolment, tokens), ``bureau`` (the energy bureau: every site,
alarm handling), ``enterprise`` (one enterprise's own sites, read-only), ``checkpoint`` (police
and coal checkpoints: weighings and proofs) and ``datapool`` (the city data pool: read feeds).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import psycopg

__all__ = [
    "ROLES",
    "AuthError",
    "Principal",
    "Role",
    "TOKEN_PREFIX",
    "create_token",
    "hash_token",
    "lookup_token",
    "revoke_token",
]

Role = Literal["admin", "bureau", "enterprise", "checkpoint", "datapool"]
ROLES: tuple[str, ...] = get_args(Role)
TOKEN_PREFIX = "cgt_"


class AuthError(Exception):
    """A token cannot be created as asked (bad role, enterprise missing or misplaced)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, role and, for the enterprise role, the enterprise."""

    token_id: int
    role: Role
    enterprise: str | None
    label: str

    @property
    def name(self) -> str:
        """How the caller is named in alarm acknowledgements and logs."""
        return self.label or f"{self.role}#{self.token_id}"

    @property
    def sees_all_sites(self) -> bool:
        return self.role != "enterprise"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_token(
    conn: psycopg.Connection[Any], role: str, *, enterprise: str | None = None, label: str = ""
) -> tuple[str, Principal]:
    """Create and store a token; returns the token text (shown once) and its principal."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == "enterprise" and not enterprise:
        raise AuthError("the enterprise role needs --enterprise NAME: the enterprise whose "
                        "sites the token may see")
    if role != "enterprise" and enterprise:
        raise AuthError(f"--enterprise applies to the enterprise role only, not {role!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (token_hash, role, enterprise, label) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (hash_token(token), role, enterprise, label),
    ).fetchone()
    assert row is not None
    return token, Principal(token_id=row[0], role=cast(Role, role), enterprise=enterprise,
                            label=label)


def lookup_token(conn: psycopg.Connection[Any], token: str) -> Principal | None:
    """The principal for a presented token, or None if it is unknown or revoked."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute(
        "SELECT id, role, enterprise, label FROM api_tokens"
        " WHERE token_hash = %s AND revoked_at IS NULL",
        (hash_token(token),),
    ).fetchone()
    if row is None:
        return None
    return Principal(token_id=row[0], role=row[1], enterprise=row[2], label=row[3])


def revoke_token(conn: psycopg.Connection[Any], token_id: int) -> bool:
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (token_id,),
    )
    return cur.rowcount == 1
