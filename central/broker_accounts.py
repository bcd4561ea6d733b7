"""Mosquitto accounts for coalgate: the dynamic-security document (roles, clients, client ids).

Why dynamic security and not ``acl_file``: measured on Mosquitto 2.0.11, an ``acl_file`` never
refuses a SUBSCRIBE — ``#``, another site's ``ack`` and ``$share/ingest/coalgate/v1/sites/+/ledger``
are all granted, only delivery is filtered. A gate's login could therefore join the central's
shared ingest subscription; the broker then hands it part of every site's batches and drops
them at its read check, so they never reach the central. The dynamic-security plugin checks
subscriptions against the full filter, ``$share/<group>/`` included, and binds a username to
one client id. So every site gets its own role with exactly its topics, and its client is
bound to the client id ``edge-<site>`` the gate uses (edge_agent.sync.outbox): no other login
can take it, kick the gate off and discard its stored session.

The document is what ``mosquitto_ctrl dynsec init`` writes and the plugin keeps up to date
(``plugin_opt_config_file``); password hashes are the plugin's own format (PBKDF2-HMAC-SHA512,
12-byte salt, 101 iterations — checked against a file made by ``mosquitto_ctrl``).
Sites added while the broker runs: config/mosquitto/README.md (``mosquitto_ctrl`` commands).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.sync.protocol import TOPIC_ROOT
from ledger.private_file import write_private

__all__ = [
    "CENTRAL_USER",
    "GATE_PUBLISHES",
    "GATE_READS",
    "Account",
    "central_role",
    "dynsec_document",
    "gate_client_id",
    "mosquitto_ctrl_commands",
    "site_role",
    "write_dynsec",
]

CENTRAL_USER = "central"
VIEWER_USER = "bureau-view"
ADMIN_USER = "dynsec-admin"
# What a gate sends and receives, all under coalgate/v1/sites/<its id>/ (docs/protocol.md).
GATE_PUBLISHES = ("ledger", "checkpoint", "live", "status")
GATE_READS = ("ack", "tickets", "cmd")
_SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ITERATIONS = 101  # the plugin's own value (mosquitto_ctrl dynsec init writes it)


def gate_client_id(site: str) -> str:
    """The one client id a site's login may use (the gate's outbox default)."""
    return f"edge-{site}"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def _check_site(site: str) -> None:
    # No MQTT wildcards or separators: the site id becomes one literal topic level.
    if not _SITE_ID.fullmatch(site) or site in (CENTRAL_USER, VIEWER_USER, ADMIN_USER):
        raise ValueError(
            f"site id {site!r} cannot be a broker account: use 1-64 of A-Z a-z 0-9 . _ - "
            f"(no '/', '+', '#'), and not one of {CENTRAL_USER}, {VIEWER_USER}, {ADMIN_USER}"
        )


def site_role(site: str) -> dict[str, Any]:
    """Role ``site-<id>``: publish its four topics, subscribe and receive its three, no more.
    Literal topics: the 2.0 plugin does not substitute %u (measured)."""
    _check_site(site)
    base = f"{TOPIC_ROOT}/{site}"
    acls = [_acl("publishClientSend", f"{base}/{t}") for t in GATE_PUBLISHES]
    for t in GATE_READS:
        acls += [_acl("subscribeLiteral", f"{base}/{t}"),
                 _acl("publishClientReceive", f"{base}/{t}")]
    return {"rolename": f"site-{site}", "acls": acls}


def central_role() -> dict[str, Any]:
    """Role ``central``: every site's topics, and the shared ingest subscriptions — the only
    role allowed to subscribe with a ``$share/`` prefix."""
    every = f"{TOPIC_ROOT}/#"
    return {"rolename": "central", "acls": [
        _acl("publishClientSend", every),
        _acl("publishClientReceive", every),
        _acl("subscribePattern", every),
        _acl("subscribePattern", f"$share/+/{every}"),
        _acl("unsubscribePattern", "#"),
    ]}


def _viewer_role() -> dict[str, Any]:
    acls = []
    for t in ("live", "status"):
        acls += [_acl("subscribePattern", f"{TOPIC_ROOT}/+/{t}"),
                 _acl("publishClientReceive", f"{TOPIC_ROOT}/+/{t}")]
    return {"rolename": "bureau-view", "acls": acls}


def _admin_role() -> dict[str, Any]:
    control = "$CONTROL/dynamic-security/#"
    return {"rolename": "dynsec-admin", "acls": [
        _acl("publishClientSend", control), _acl("publishClientReceive", control),
        _acl("subscribePattern", control)]}


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    role: str
    client_id: str | None = None


def _client(account: Account, salt: bytes | None = None) -> dict[str, Any]:
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", account.password.encode("utf-8"), salt,
                                 _ITERATIONS, 64)
    out: dict[str, Any] = {
        "username": account.username,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
        "roles": [{"rolename": account.role}],
    }
    if account.client_id is not None:
        out["clientid"] = account.client_id
    return out


def dynsec_document(central_password: str, sites: Mapping[str, str], *,
                    viewer_password: str | None = None,
                    admin_password: str | None = None) -> dict[str, Any]:
    """The plugin's config: ``central``, one bound client per site, optional ``bureau-view``
    (reads live/status) and ``dynsec-admin`` (for ``mosquitto_ctrl``, adding sites live).
    Anything not granted is refused, including receiving (defaultACLAccess all false)."""
    accounts = [Account(CENTRAL_USER, central_password, "central")]
    roles = [central_role()]
    for site, password in sorted(sites.items()):
        role = site_role(site)
        roles.append(role)
        accounts.append(Account(site, password, role["rolename"], gate_client_id(site)))
    if viewer_password is not None:
        roles.append(_viewer_role())
        accounts.append(Account(VIEWER_USER, viewer_password, "bureau-view"))
    if admin_password is not None:
        roles.append(_admin_role())
        accounts.append(Account(ADMIN_USER, admin_password, "dynsec-admin"))
    for account in accounts:
        if not account.password:
            raise ValueError(f"broker account {account.username!r} has an empty password")
    return {
        "clients": [_client(a) for a in accounts],
        "roles": roles,
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }


def write_dynsec(path: Path, document: Mapping[str, Any]) -> Path:
    """Write the document mode 0600 (it holds password hashes); the broker must own it."""
    return write_private(path, json.dumps(document, indent=1) + "\n")


def mosquitto_ctrl_commands(site: str) -> Iterable[list[str]]:
    """``mosquitto_ctrl dynsec`` argument lists that add ``site`` to a running broker (the
    password is asked for interactively by ``createClient``)."""
    role = site_role(site)
    yield ["createRole", role["rolename"]]
    for acl in role["acls"]:
        yield ["addRoleACL", role["rolename"], acl["acltype"], acl["topic"], "allow"]
    yield ["createClient", site, "-c", gate_client_id(site)]
    yield ["addClientRole", site, role["rolename"]]
