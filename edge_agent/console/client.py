"""Talking to a gate console from a program (the demo, the simulator tests, scripts): log in
as an account, push as a device, and provision both for a simulated site.

A logged-in client carries the session cookie and sends the anti-CSRF token the login returned
in ``X-CSRF-Token`` on every request, as the console page does.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.private_file import write_private

__all__ = ["alogin", "device_headers", "ensure_accounts", "login", "write_push_secret"]


def device_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def write_push_secret(path: Path) -> str:
    """The device push secret in ``path`` (made, 0600, when missing)."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_hex(24)
    write_private(path, secret + "\n", overwrite=False)
    return secret


def ensure_accounts(path: Path, accounts: Mapping[str, tuple[str, str]]) -> None:
    """Add each ``name: (role, password)`` not yet in the accounts file ``path``."""
    from edge_agent.accounts import AccountStore

    store = AccountStore(path)
    have = {a.name for a in store.list()}
    for name, (role, password) in accounts.items():
        if name not in have:
            store.add(name, role, password)


def _csrf(r: Any, name: str) -> str:
    if r.status_code != 200:
        raise RuntimeError(f"console login as {name} failed: HTTP {r.status_code} {r.text[:200]}")
    return str(r.json()["csrf"])


def login(client: Any, base: str, name: str, password: str) -> Any:
    """Log an ``httpx.Client`` in; returns it, sending the anti-CSRF token from now on."""
    r = client.post(base + "/api/login", json={"name": name, "password": password})
    client.headers["X-CSRF-Token"] = _csrf(r, name)
    return client


async def alogin(client: Any, base: str, name: str, password: str) -> Any:
    """:func:`login` for an ``httpx.AsyncClient``."""
    r = await client.post(base + "/api/login", json={"name": name, "password": password})
    client.headers["X-CSRF-Token"] = _csrf(r, name)
    return client
