"""Gates and loading sites.

Each weighbridge (gate) is its own ledger site: site id, key, MQTT topics, per-gate broker ACL.
An e-ticket names the **loading site** (the mine) it is valid at. ``sites.loading_site`` maps a
gate to the loading site it serves (default: the gate's own id), so a mine with two weighbridges
enrols both with one loading site: a ticket for it is valid at either gate, the central
reconciles a use at either as honest, and every delta for it goes to both gates, each on its own
``tickets`` topic (central.tickets.distribution).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from central.tickets.errors import SiteNotAllowedError, TicketInputError

__all__ = [
    "LOADING_SITE_PATTERN",
    "check_loading_site",
    "check_issuing_site",
    "gates_of",
    "loading_site_of",
]

LOADING_SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Db = psycopg.Connection[Any] | psycopg.Cursor[Any]


def check_loading_site(conn: Db, *, site: str, enterprise: str, loading_site: str) -> None:
    """Refuse to enrol gate ``site`` of ``enterprise`` at ``loading_site`` when that loading
    site belongs to another enterprise (its tickets would then pass this gate): another
    enterprise's gate serves it, or it is the id of another enterprise's gate."""
    if not re.fullmatch(LOADING_SITE_PATTERN, loading_site):
        raise TicketInputError(
            f"loading site {loading_site!r} is not a valid id: 1-64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. yl-mine-03)"
        )
    row = conn.execute(
        "SELECT id, enterprise FROM sites WHERE (loading_site = %s OR id = %s)"
        " AND enterprise <> %s AND id <> %s LIMIT 1",
        (loading_site, loading_site, enterprise, site),
    ).fetchone()
    if row is not None:
        raise SiteNotAllowedError(
            f"loading site {loading_site!r} belongs to enterprise {row[1]!r} (gate {row[0]}); "
            f"a gate of {enterprise!r} cannot serve it. Use the enterprise's own mine id, or "
            "omit --loading-site to default to the gate's id"
        )


def check_issuing_site(conn: Db, *, enterprise: str, loading_site: str) -> None:
    """A ticket may name a loading site only when the enterprise has a gate serving it."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE enterprise = %s), count(*) FROM sites"
        " WHERE loading_site = %s",
        (enterprise, loading_site),
    ).fetchone()
    own, total = (int(row[0]), int(row[1])) if row else (0, 0)
    if own == 0 or own != total:
        raise SiteNotAllowedError(
            f"site {loading_site!r} is not a loading site of enterprise {enterprise!r}; "
            "choose the loading site (mine) of one of the enterprise's enrolled weighbridges "
            "(GET /api/v1/sites shows each gate's loading_site)"
        )


def gates_of(conn: Db, loading_site: str) -> list[str]:
    """The gates (site ids) that serve a loading site, in id order."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM sites WHERE loading_site = %s ORDER BY id", (loading_site,)
    ).fetchall()]


def loading_site_of(conn: Db, site: str) -> str | None:
    """The loading site a gate serves; None for a site that is not enrolled."""
    row = conn.execute("SELECT loading_site FROM sites WHERE id = %s", (site,)).fetchone()
    return str(row[0]) if row else None
