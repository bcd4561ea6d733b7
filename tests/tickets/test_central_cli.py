"""``coalgate central tickets`` commands against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from central.tickets.cli import app
from ledger.keys import SignerKey, write_signer_file
from ledger.trust import TrustList
from tests.tickets.central_support import make_database


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SignerKey]:
    url, drop = make_database()
    root = SignerKey.generate("bureau-root")
    write_signer_file(tmp_path / "root.key", root)
    monkeypatch.setenv("COALGATE_CENTRAL__DATABASE__URL", url)
    monkeypatch.setenv("COALGATE_TICKETS_ROOT_KEY", str(tmp_path / "root.key"))
    try:
        yield root
    finally:
        drop()


def test_issuer_key_then_trust_list(db_env: SignerKey) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["trust-list"])
    assert empty.exit_code == 2 and "no trust list" in empty.output
    made = runner.invoke(app, ["issuer-key", "E610821001"])
    assert made.exit_code == 0, made.output
    kid = made.output.split()[0]
    listed = runner.invoke(app, ["trust-list"])
    assert listed.exit_code == 0
    trust = TrustList.open(listed.output, [db_env.verifier])
    assert [(k.issuer, k.key.key_id.hex()) for k in trust.keys] == [("E610821001", kid)]
    bad = runner.invoke(app, ["issuer-key", "榆林 某煤业"])
    assert bad.exit_code == 2 and "issuer id" in bad.output
