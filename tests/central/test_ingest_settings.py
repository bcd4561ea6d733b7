"""Config loading and the embedded PostgreSQL default."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from central.db import (
    DatabaseSettings,
    MigrationError,
    list_migrations,
    migrate,
    resolve_url,
    stop_embedded,
)
from central.ingest.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads() -> None:
    s = load_settings(REPO / "config" / "central.example.toml")
    assert s.mqtt.username == "central" and s.share_group == "ingest"
    assert s.database.url is None  # embedded by default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[mqtt]\nport = 'fast'\n", r"Expected int for \[mqtt\].port"),
        ("[mqtt]\nport = 70000\n", "not a TCP port"),
        ("[ingest]\nshare_group = 'a/b'\n", "may not contain"),
        ("[database]\nurl = 5\n", "must be a string"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "central.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(path)


def test_missing_config_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="central.example.toml"):
        load_settings(tmp_path / "nope.toml")


def test_misnamed_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("select 1")
    with pytest.raises(MigrationError, match="NNN_lower_case_name.sql"):
        list_migrations(tmp_path)


def test_embedded_postgres_starts_and_migrates(tmp_path: Path) -> None:
    data = tmp_path / "central"
    url = resolve_url(DatabaseSettings(url=None, data_dir=data))
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
            assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)
            assert "coalgate" in url
    finally:
        stop_embedded(data)
    assert subprocess.run(["pgrep", "-f", str(data)], capture_output=True).returncode != 0
