"""Throwaway PostgreSQL databases for tests.

Each one is created under a random name in the PostgreSQL at 127.0.0.1:5432 (trust auth, user
postgres; the ``test`` database is the admin connection), optionally migrated with the
project's migrations, and dropped afterwards. A missing server fails the test: PostgreSQL is
part of the test environment (``scripts/setup test``), not an optional extra.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from central.db import migrate

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def database_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def make_database(prefix: str = "coalgate_t_", *,
                  migrated: bool = True) -> tuple[str, Callable[[], None]]:
    """A new database and a function that drops it. ``migrated=False`` leaves it empty, for
    tests of code that must migrate a fresh database itself (the API app, the CLI)."""
    name = prefix + uuid.uuid4().hex[:12]
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 (db test, user postgres) is required: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)

    def drop() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if migrated:
        try:
            with psycopg.connect(url) as conn:
                migrate(conn)
        except BaseException:
            # the caller never gets ``drop`` when this raises: do not leak the database
            drop()
            raise
    return url, drop


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated throwaway database for one test."""
    url, drop = make_database()
    try:
        yield url
    finally:
        drop()
