"""Site enrolment: the one place a gate (site), its owner and its verifier key are recorded.

``coalgate central site enroll`` and ``POST /api/v1/sites`` both call ``enrol_site``; each
turns its typed errors into its own words (an exit code and an option name, or an HTTP status).
The tests and benchmarks enrol through it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from central.tickets.sites import check_loading_site

if TYPE_CHECKING:  # the API package imports this module: no import cycle at run time
    from central.api.schemas import SiteIn

__all__ = ["SiteExistsError", "enrol_site"]


class SiteExistsError(Exception):
    """The site id is already enrolled: enrolment is once per site id."""


def enrol_site(conn: psycopg.Connection[Any], site: SiteIn) -> str:
    """Record ``site`` and an empty live state for it; return the loading site the gate serves.

    Transactions: with none open on ``conn`` (or in autocommit), the enrolment is its own
    transaction and is committed on return; inside the caller's transaction it is a savepoint,
    and the caller commits.

    Raises SiteExistsError for an id enrolled before; TicketInputError for a malformed loading
    site and SiteNotAllowedError for another enterprise's (both from
    ``central.tickets.sites.check_loading_site``). Nothing is written when any is raised.
    """
    loading_site = site.loading_site or site.id
    try:
        with conn.transaction():
            check_loading_site(conn, site=site.id, enterprise=site.enterprise,
                               loading_site=loading_site)
            conn.execute(
                "INSERT INTO sites (id, enterprise, name, lat, lon, verifier_key, loading_site)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (site.id, site.enterprise, site.name, site.lat, site.lon, site.verifier_key,
                 loading_site),
            )
            conn.execute("INSERT INTO site_state (site) VALUES (%s) ON CONFLICT DO NOTHING",
                         (site.id,))
    except psycopg.errors.UniqueViolation:
        raise SiteExistsError(f"site {site.id!r} is already enrolled") from None
    return loading_site
