"""``coalgate central tickets`` commands against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.tickets.cli import app
from ledger.keys import SignerKey, write_signer_file
from ledger.trust import TrustList
from tests.support.pg import make_database


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[SignerKey, Path]]:
    """A database, and a central config whose [tickets] names the trust-root key (relative to
    the config file, as an operator would write it)."""
    url, drop = make_database()
    root = SignerKey.generate("bureau-root")
    write_signer_file(tmp_path / "root.key", root)
    config = tmp_path / "central.toml"
    config.write_text('[tickets]\nroot_key_file = "root.key"\n', encoding="utf-8")
    monkeypatch.setenv("COALGATE_CENTRAL__DATABASE__URL", url)
    try:
        yield root, config
    finally:
        drop()


def test_issuer_key_then_trust_list(db_env: tuple[SignerKey, Path]) -> None:
    root, config = db_env
    runner = CliRunner()
    empty = runner.invoke(app, ["trust-list", "--config", str(config)])
    assert empty.exit_code == 2 and "no trust list" in empty.output
    made = runner.invoke(app, ["issuer-key", "E610821001", "--config", str(config)])
    assert made.exit_code == 0, made.output
    kid = made.output.split()[0]
    listed = runner.invoke(app, ["trust-list", "--config", str(config)])
    assert listed.exit_code == 0
    trust = TrustList.open(listed.output, [root.verifier])
    assert [(k.issuer, k.key.key_id.hex()) for k in trust.keys] == [("E610821001", kid)]
    bad = runner.invoke(app, ["issuer-key", "榆林 某煤业", "--config", str(config)])
    assert bad.exit_code == 2 and "issuer id" in bad.output


def test_issuer_key_needs_the_root_key_named_in_the_config(
    db_env: tuple[SignerKey, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    # The retired environment variable is not read: only [tickets] root_key_file counts.
    monkeypatch.setenv("COALGATE_TICKETS_ROOT_KEY", str(tmp_path / "root.key"))
    none = runner.invoke(app, ["issuer-key", "E610821001"])
    assert none.exit_code == 2
    assert "no trust-root signer key" in none.output and "[tickets] root_key_file" in none.output

    missing = tmp_path / "elsewhere.toml"
    missing.write_text('[tickets]\nroot_key_file = "gone.key"\n', encoding="utf-8")
    gone = runner.invoke(app, ["issuer-key", "E610821001", "--config", str(missing)])
    assert gone.exit_code == 2
    out = " ".join(gone.output.split())  # typer may wrap the line
    assert str(missing) in out and "tickets.root_key_file" in out, out
    assert "gone.key" in out and "coalgate ledger keygen" in out, out

    typo = tmp_path / "typo.toml"
    typo.write_text('[tickets]\npublic_url = "coal.example.gov.cn"\n', encoding="utf-8")
    bad = runner.invoke(app, ["issuer-key", "E610821001", "--config", str(typo)])
    out = " ".join(bad.output.split())
    assert bad.exit_code == 2 and str(typo) in out and "tickets.public_url" in out, out
    assert "https://coal.example.gov.cn" in out, out  # the fix, by example
