"""Operator accounts at the gate: names, roles and argon2id password hashes in a small SQLite
file next to the site config (``console.accounts``, mode 0600).

Why argon2id (``argon2-cffi``): it is the first choice of RFC 9106 and OWASP for password
storage, memory-hard (a GPU or FPGA guessing farm pays 64 MiB per guess), and its encoded hash
carries its own parameters, so raising the cost later re-hashes at the next login
(:meth:`AccountStore.verify`). It is already installed (pinned in constraints.txt) and is now a
direct dependency. ``hashlib.scrypt`` would also do, but leaves the parameter encoding and the
upgrade path to us.

The console reads this file at every login, so ``coalgate edge user add/passwd/disable`` take
effect on a running gate without a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["ROLES", "Account", "AccountError", "AccountStore", "Role", "check_name",
           "check_password", "check_role"]

Role = Literal["operator", "supervisor"]
ROLES: tuple[Role, ...] = ("operator", "supervisor")
_NAME = re.compile(r"^[\w.-]{1,32}$")  # \w is Unicode: 张三 is a fine account name
MIN_PASSWORD = 8
MAX_PASSWORD = 256  # argon2 takes any length; a cap keeps a 10 MB "password" off the KDF

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor')),
    hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    changed TEXT NOT NULL
)
"""


class AccountError(ValueError):
    """An account cannot be added or changed; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    disabled: bool = False
    created: str = ""
    changed: str = ""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short ({len(password)} characters); use at "
                           f"least {MIN_PASSWORD}")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password is longer than {MAX_PASSWORD} characters")


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise AccountError(f"account name {name!r} is not allowed: 1–32 letters, digits, '_', "
                           "'-' or '.', no spaces (e.g. zhangsan or 张三)")


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccountStore:
    """The accounts file. Opened per use (the CLI and the running gate share it)."""

    def __init__(self, path: str | Path, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self._dummy: str | None = None

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        if not self.path.exists():
            if not create:
                raise AccountError(f"no accounts file {self.path}; add the first account with "
                                   f"`coalgate edge user add NAME --role supervisor -c SITE.toml`")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created 0600 before SQLite opens it: the hashes are nobody else's business.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, timeout=10)
        conn.execute(_SCHEMA)
        return conn

    def exists(self) -> bool:
        return self.path.exists()

    def add(self, name: str, role: str, password: str) -> Account:
        check_name(name)
        r = check_role(role)
        check_password(password)
        h = self.hasher.hash(password)
        now = _now()
        with self._connect(create=True) as conn:
            try:
                conn.execute("INSERT INTO accounts (name, role, hash, created, changed) "
                             "VALUES (?, ?, ?, ?, ?)", (name, r, h, now, now))
            except sqlite3.IntegrityError:
                raise AccountError(f"account {name!r} already exists; change its password "
                                   f"with `coalgate edge user passwd {name}`") from None
        return Account(name, r, False, now, now)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        self._update(name, "hash = ?, disabled = 0", self.hasher.hash(password))

    def set_role(self, name: str, role: str) -> None:
        self._update(name, "role = ?", check_role(role))

    def disable(self, name: str) -> None:
        self._update(name, "disabled = ?", 1)

    def _update(self, name: str, assignment: str, value: object) -> None:
        with self._connect() as conn:
            cur = conn.execute(f"UPDATE accounts SET {assignment}, changed = ? WHERE name = ?",
                               (value, _now(), name))
            if cur.rowcount == 0:
                raise AccountError(f"no account {name!r}; see `coalgate edge user list`")

    def stamp(self, name: str) -> str | None:
        """A fingerprint of the account's role and password hash, or None when it is disabled
        or gone. A console session remembers the stamp it was opened with: when it differs,
        the account was disabled, demoted or given a new password since, and the session
        ends (issue 12 attack review: sessions outlived ``edge user disable``)."""
        if not self.path.exists():
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT role, hash, disabled FROM accounts WHERE name = ?",
                               (name,)).fetchone()
        if row is None or row[2]:
            return None
        return hashlib.sha256(f"{row[0]}\0{row[1]}".encode()).hexdigest()

    def list(self) -> list[Account]:
        if not self.path.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute("SELECT name, role, disabled, created, changed FROM accounts "
                                "ORDER BY name").fetchall()
        return [Account(n, cast(Role, r), bool(d), c, ch) for n, r, d, c, ch in rows]

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the name and password match an enabled account, else None.

        Slow on purpose (one argon2id evaluation); call it off the event loop."""
        row = None
        if self.path.exists() and len(password) <= MAX_PASSWORD:
            with self._connect() as conn:
                row = conn.execute("SELECT role, hash, disabled FROM accounts WHERE name = ?",
                                   (name,)).fetchone()
        if self._dummy is None:
            # A hash to verify against for unknown names, so "no such account" costs the same
            # time as "wrong password" and names cannot be probed by timing.
            self._dummy = self.hasher.hash("not-a-password-" + os.urandom(8).hex())
        stored = row[1] if row else self._dummy
        try:
            self.hasher.verify(stored, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row[2]:
            return None
        if self.hasher.check_needs_rehash(stored):
            self._update(name, "hash = ?", self.hasher.hash(password))
        return Account(name, cast(Role, row[0]))
