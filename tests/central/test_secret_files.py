"""Secrets at rest: generated configs and keys are 0600 from the first byte; the central reads
its broker password from a password_file; central.toml written by the demo holds no password."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.cli import app as central_app
from central.settings import settings_from_mapping
from coalgate.demo_plan import central_config_toml
from edge_agent.sync.mqtt import MqttConfigError, MqttSettings
from ledger.keys import SignerKey, write_signer_file
from ledger.private_file import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_is_0600_whatever_the_umask_or_old_file(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        target = tmp_path / "conf" / "central.toml"
        target.parent.mkdir()
        target.write_text("old")
        target.chmod(0o644)  # an older, world-readable file
        write_private(target, "new")
        assert _mode(target) == 0o600 and target.read_text() == "new"
        key = tmp_path / "k" / "site.key"
        write_signer_file(key, SignerKey.generate("mine-a"))
        assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
        with pytest.raises(FileExistsError):
            write_private(key, "x", overwrite=False)
        assert [p.name for p in target.parent.iterdir()] == ["central.toml"]  # no temp left
    finally:
        os.umask(old)


def test_central_reads_its_broker_password_from_a_file(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.password"
    write_private(pw, "s3cret\n")
    doc = tomllib.loads(central_config_toml(
        database_url="postgresql://x@/c?host=/tmp", data_dir=str(tmp_path), mqtt_host="h",
        mqtt_port=1883, api_port=8080, mqtt_password_file=pw.name,
        issuer_key_dir="keys"))
    assert "password" not in doc["mqtt"] and doc["mqtt"]["password_file"] == pw.name
    settings = settings_from_mapping(doc, base=tmp_path, env={})
    assert settings.ingest.mqtt.password == "s3cret"
    assert settings.tickets.issuer_key_dir == tmp_path / "keys"
    pw.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        settings_from_mapping(doc, base=tmp_path, env={})
    with pytest.raises(MqttConfigError, match="both password and password_file"):
        MqttSettings.from_mapping({"password": "x", "password_file": str(pw)})


def test_broker_accounts_cli_writes_0600(tmp_path: Path) -> None:
    for name in ("central.pw", "mine-a.pw"):
        write_private(tmp_path / name, f"{name}-secret\n")
    out = tmp_path / "dynamic-security.json"
    r = CliRunner().invoke(central_app, [
        "broker-accounts", "--out", str(out), "--central-password-file",
        str(tmp_path / "central.pw"), "--site", f"mine-a={tmp_path / 'mine-a.pw'}"])
    assert r.exit_code == 0, r.output
    assert _mode(out) == 0o600
    text = out.read_text()
    assert '"clientid": "edge-mine-a"' in text and "secret" not in text
