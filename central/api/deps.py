"""FastAPI dependencies: database connections, the calling principal, role and site checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from central.auth import Principal, Role, lookup_token
from central.settings import Settings

__all__ = [
    "Admin",
    "AlarmHandler",
    "AlarmReader",
    "Conn",
    "CurrentUser",
    "Reader",
    "SettingsDep",
    "require_roles",
    "check_site_visible",
]

_bearer = HTTPBearer(auto_error=False, description="A token from `coalgate central token create`")


def get_pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_conn(pool: Annotated[ConnectionPool, Depends(get_pool)]) -> Iterator[psycopg.Connection]:
    """One pooled connection per request; committed when the endpoint succeeds."""
    with pool.connection() as conn:
        yield conn


# scope="function": commit and return the connection before the response is sent, so a client
# that got 200 sees its change stored, and a long SSE stream does not hold a pooled connection.
Conn = Annotated[psycopg.Connection[Any], Depends(get_conn, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_user(
    conn: Conn,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(create one with `coalgate central token create --role ROLE`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = lookup_token(conn, creds.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only the given roles through (403 for the others)."""

    def check(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {user.role} role may not do this; it needs one of: {', '.join(roles)}",
            )
        return user

    return check


# Everyone who reads the record: every role may read the sites and weighings it is allowed to see.
Reader = Annotated[Principal, Depends(require_roles(
    "admin", "bureau", "enterprise", "checkpoint", "datapool"))]
# Alarms are for those who supervise: the bureau (and admin) handle them, enterprises see theirs.
AlarmReader = Annotated[Principal, Depends(require_roles("admin", "bureau", "enterprise"))]
AlarmHandler = Annotated[Principal, Depends(require_roles("admin", "bureau"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def check_site_visible(conn: psycopg.Connection[Any], user: Principal, site: str) -> None:
    """403 if an enterprise token asks for a site outside its enterprise, 404 if unknown.

    For an enterprise token both cases are 403, so it cannot probe which sites exist.
    """
    row = conn.execute("SELECT enterprise FROM sites WHERE id = %s", (site,)).fetchone()
    if not user.sees_all_sites and (row is None or row[0] != user.enterprise):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this token may see only the sites of enterprise {user.enterprise!r}",
        )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no enrolled site {site!r}")
