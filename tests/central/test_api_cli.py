"""``coalgate central token|site`` against a real PostgreSQL, and the served app's CLI form."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from central.auth import lookup_token
from central.cli import app
from ledger.keys import SignerKey
from tests.support.pg import make_database

runner = CliRunner()


@pytest.fixture(scope="module")
def db_env() -> Iterator[tuple[str, dict[str, str]]]:
    url, drop = make_database(migrated=False)
    try:
        yield url, {"COALGATE_CENTRAL__DATABASE__URL": url}
    finally:
        drop()


def test_token_create_prints_a_working_token_and_stores_only_its_hash(db_env):
    url, env = db_env
    result = runner.invoke(app, ["token", "create", "--role", "enterprise",
                                 "--enterprise", "榆林煤业", "--label", "销售科"], env=env)
    assert result.exit_code == 0, result.output
    tok = result.stdout.strip().splitlines()[0]
    assert tok.startswith("cgt_") and len(tok) > 40
    with psycopg.connect(url) as conn:
        principal = lookup_token(conn, tok)
        assert principal is not None
        assert (principal.role, principal.enterprise, principal.label) == (
            "enterprise", "榆林煤业", "销售科")
        stored = conn.execute("SELECT token_hash FROM api_tokens").fetchall()
        assert all(tok.encode() not in bytes(row[0]) for row in stored)
    revoked = runner.invoke(app, ["token", "revoke", str(principal.token_id)], env=env)
    assert revoked.exit_code == 0, revoked.output
    with psycopg.connect(url) as conn:
        assert lookup_token(conn, tok) is None


@pytest.mark.parametrize(("args", "message"), [
    (["--role", "king"], "unknown role 'king'"),
    (["--role", "enterprise"], "needs --enterprise"),
    (["--role", "bureau", "--enterprise", "x"], "applies to the enterprise role only"),
])
def test_token_create_refuses_bad_roles_with_a_fix(db_env, args, message):
    _, env = db_env
    result = runner.invoke(app, ["token", "create", *args], env=env)
    assert result.exit_code == 2 and message in result.output


def test_site_enroll_takes_the_key_text_or_file(db_env, tmp_path):
    url, env = db_env
    key = SignerKey.generate("cli-mine")
    result = runner.invoke(app, ["site", "enroll", "cli-mine", "--key", key.verifier.to_text(),
                                 "--enterprise", "榆林煤业", "--name", "北磅房"], env=env)
    assert result.exit_code == 0, result.output
    pub = tmp_path / "other.pub"
    other = SignerKey.generate("cli-mine-2")
    pub.write_text(other.verifier.to_text() + "\n")
    result = runner.invoke(app, ["site", "enroll", "cli-mine-2", "--key", str(pub),
                                 "--enterprise", "榆林煤业"], env=env)
    assert result.exit_code == 0, result.output
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, verifier_key FROM sites ORDER BY id").fetchall()
    assert rows == [("cli-mine", key.verifier.to_text()),
                    ("cli-mine-2", other.verifier.to_text())]
    again = runner.invoke(app, ["site", "enroll", "cli-mine", "--key", key.verifier.to_text(),
                                "--enterprise", "x"], env=env)
    assert again.exit_code == 2 and "already enrolled" in again.output
    bad = runner.invoke(app, ["site", "enroll", "x", "--key", "nonsense", "--enterprise", "x"],
                        env=env)
    assert bad.exit_code == 2 and "--key" in bad.output


def test_bad_config_is_reported_with_the_file_and_key(tmp_path):
    cfg = tmp_path / "central.toml"
    cfg.write_text("[api]\nport = 'eighty'\n")
    result = runner.invoke(app, ["token", "create", "--role", "admin", "--config", str(cfg)])
    assert result.exit_code == 2
    assert str(cfg) in result.output and "api.port" in result.output
    missing = runner.invoke(app, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "no such config file" in missing.output


def test_every_command_has_an_example():
    import typer.main

    group = typer.main.get_command(app)
    stack = [group]
    seen = 0
    while stack:
        cmd = stack.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            stack.extend(subs.values())
            continue
        seen += 1
        assert "Example:" in (cmd.help or ""), cmd.name
    assert seen >= 5


def test_the_example_config_loads():
    from pathlib import Path

    from central.settings import load_settings

    example = Path(__file__).resolve().parents[2] / "config" / "central.example.toml"
    settings = load_settings(example, env={})
    assert settings.api.port == 8080 and settings.rules.offline_after_s == 300
    assert settings.timezone == "Asia/Shanghai"
    assert settings.ingest.mqtt.username == "central"
