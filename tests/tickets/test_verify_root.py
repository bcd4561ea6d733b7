"""`coalgate ticket verify` never trusts a trust list it has not checked against the bureau's
root: without --root it refuses (exit 2, says how to fix); --insecure-any-root goes on with a
loud warning; a list signed by anyone but the root is refused with --root."""

from __future__ import annotations

from pathlib import Path

from ledger.keys import SignerKey, write_signer_file
from tests.tickets.conftest import ISSUER
from tests.tickets.test_cli import NOW, issue, keys, run

__all__ = ["keys"]  # the fixture, imported for pytest


def _forged_list(tmp_path: Path, mine_pub: Path) -> Path:
    """A trust list naming the issuer key, signed by a key that is not the bureau's root."""
    forger = tmp_path / "forger.key"
    write_signer_file(forger, SignerKey.generate("bureau-root"))
    note = tmp_path / "forged.note"
    r = run("trust", "--root-key", forger, "--out", note,
            "--add", f"{ISSUER}={mine_pub}", "--not-before", "2026-01-01T00:00:00Z")
    assert r.exit_code == 0, r.output
    return note


def test_verify_refuses_a_trust_list_without_root(keys: dict[str, Path], tmp_path: Path) -> None:
    text = issue(keys)
    forged = _forged_list(tmp_path, keys["mine_pub"])
    r = run("verify", text, "--trust", forged, *NOW)
    assert r.exit_code == 2, r.output
    assert "VALID" not in r.stdout
    assert "--root" in r.stderr and "bureau" in r.stderr and "--insecure-any-root" in r.stderr
    # with the real root the forged list is refused outright
    r = run("verify", text, "--trust", forged, "--root", keys["root_pub"], *NOW)
    assert r.exit_code == 2 and "VALID" not in r.stdout, r.output


def test_insecure_any_root_warns_loudly(keys: dict[str, Path], tmp_path: Path) -> None:
    text = issue(keys)
    forged = _forged_list(tmp_path, keys["mine_pub"])
    r = run("verify", text, "--trust", forged, "--insecure-any-root", *NOW)
    assert r.exit_code == 0, r.output
    assert "WARNING" in r.stderr and "NOT checked" in r.stderr and "警告" in r.stderr
    r = run("verify", text, "--trust", forged, "--insecure-any-root", *NOW, "--json")
    assert '"trust_list_checked": false' in r.stdout
