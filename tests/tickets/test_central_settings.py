"""The central's e-ticket settings come from ``[tickets]`` of the central config, and only there;
a bad value is refused with the file, the key and the fix."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.cli import app as central_cli
from central.settings import SettingsError, load_settings
from central.tickets.settings import TicketSettings
from ledger.keys import SignerKey, write_signer_file

ROOT = SignerKey("bureau-root", bytes(range(100, 132)))
WITNESS = SignerKey("coalgate-central", bytes(range(1, 33)))


def _config(tmp_path: Path, tickets: str, *, witness_key: str = "witness.key") -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'[witness]\nkey_file = "{witness_key}"\n\n[tickets]\n{tickets}',
                    encoding="utf-8")
    return path


def _read(path: Path) -> TicketSettings:
    return TicketSettings.from_config(load_settings(path, env={}), source=path)


def test_the_table_is_read_with_key_files_relative_to_the_config(tmp_path: Path) -> None:
    write_signer_file(tmp_path / "root.key", ROOT)
    path = _config(tmp_path, 'root_key_file = "root.key"\n'
                             'public_url = "https://coal.example.gov.cn/"\n'
                             "default_validity_h = 24\nmax_validity_days = 7\n")
    ts = _read(path)
    assert ts.root_key is not None and ts.root_key.verifier == ROOT.verifier
    assert ts.public_url == "https://coal.example.gov.cn"
    assert (ts.default_validity, ts.max_validity_days) == (timedelta(hours=24), 7)
    assert ts.witness is None  # no witness key on this machine, none configured


def test_the_retired_environment_variables_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_signer_file(tmp_path / "root.key", ROOT)
    (tmp_path / "witness.pub").write_text(WITNESS.verifier.to_text() + "\n", encoding="utf-8")
    monkeypatch.setenv("COALGATE_TICKETS_ROOT_KEY", str(tmp_path / "root.key"))
    monkeypatch.setenv("COALGATE_TICKETS_PUBLIC_URL", "https://env.example")
    monkeypatch.setenv("COALGATE_TICKETS_WITNESS_KEY", str(tmp_path / "witness.pub"))
    ts = TicketSettings.from_config(load_settings(_config(tmp_path, "")))
    assert (ts.root_key, ts.public_url, ts.witness) == (None, "", None)
    # The central config's own overrides do reach [tickets].
    monkeypatch.setenv("COALGATE_CENTRAL__TICKETS__ROOT_KEY_FILE", str(tmp_path / "root.key"))
    ts = TicketSettings.from_config(load_settings(_config(tmp_path, "")))
    assert ts.root_key is not None and ts.root_key.verifier == ROOT.verifier


def test_the_witness_verifier_is_configured_or_derived_from_the_witness_key(
    tmp_path: Path,
) -> None:
    write_signer_file(tmp_path / "witness.key", WITNESS)
    assert _read(_config(tmp_path, "")).witness == WITNESS.verifier
    other = SignerKey("coalgate-central", bytes(range(2, 34)))
    (tmp_path / "witness.pub").write_text(other.verifier.to_text() + "\n", encoding="utf-8")
    configured = _read(_config(tmp_path, 'witness_verifier_file = "witness.pub"\n'))
    assert configured.witness == other.verifier  # the explicit key wins


@pytest.mark.parametrize(
    ("tickets", "key", "fix"),
    [
        ('root_key_file = "gone.key"\n', "tickets.root_key_file", "coalgate ledger keygen"),
        ('witness_verifier_file = "gone.pub"\n', "tickets.witness_verifier_file",
         "verifier key"),
        ('public_url = "coal.example.gov.cn"\n', "tickets.public_url",
         'public_url = "https://coal.example.gov.cn"'),
        ("default_validity_h = 0\n", "tickets.default_validity_h", "default_validity_h = 48"),
        ("max_validity_days = 400\n", "tickets.max_validity_days", "from 1 to 366"),
        ('root_key = "root.key"\n', "tickets.root_key", "root_key_file, public_url"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_the_fix(
    tmp_path: Path, tickets: str, key: str, fix: str
) -> None:
    path = _config(tmp_path, tickets)
    with pytest.raises(SettingsError) as err:
        _read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and key in message and fix in message, message


def test_a_readable_root_key_is_refused_with_the_chmod_to_run(tmp_path: Path) -> None:
    write_signer_file(tmp_path / "root.key", ROOT)
    os.chmod(tmp_path / "root.key", 0o644)
    path = _config(tmp_path, 'root_key_file = "root.key"\n')
    with pytest.raises(SettingsError, match=r"tickets\.root_key_file: .*chmod 600"):
        _read(path)


def test_serve_refuses_a_bad_tickets_value_before_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text('[database]\nurl = "postgresql://127.0.0.1:5432/test"\n\n'
                    '[tickets]\nroot_key_file = "gone.key"\n', encoding="utf-8")
    result = CliRunner().invoke(central_cli, ["serve", "--config", str(path)])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{path}: tickets.root_key_file" in out and "coalgate ledger keygen" in out, out
    assert "dashboard http" not in out  # refused before announcing anything
