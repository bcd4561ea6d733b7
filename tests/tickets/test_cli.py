from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from ledger.keys import SignerKey, write_signer_file
from ledger.ticket import parse_ticket
from ledger.ticket_cli import app
from ledger.trust import TrustList
from tests.tickets.conftest import ISSUER, SITE

runner = CliRunner()
ISSUE = ["issue", "--id", "T2611050123", "--issuer", ISSUER, "--site", SITE,
         "--plate", "陕K8A3B2", "--buyer", "鑫源兰炭", "--destination", "保德县",
         "--coal-type", "洗混煤", "--planned-kg", "34500",
         "--issued-at", "2026-11-05T08:00:00Z"]
NOW = ["--now", "2026-11-05T09:00:00Z"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    mine, root = SignerKey(ISSUER, bytes(range(32))), SignerKey("bureau-root", bytes(range(1, 33)))
    paths = {"mine": tmp_path / "mine.key", "root": tmp_path / "root.key",
             "mine_pub": tmp_path / "mine.pub", "root_pub": tmp_path / "root.pub"}
    write_signer_file(paths["mine"], mine)
    write_signer_file(paths["root"], root)
    paths["mine_pub"].write_text(mine.verifier.to_text() + "\n")
    paths["root_pub"].write_text(root.verifier.to_text() + "\n")
    return paths


def run(*args: str | Path, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def issue(keys: dict[str, Path], *extra: str) -> str:
    result = run(*ISSUE, "--key", keys["mine"], *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_issue_trust_verify(keys: dict[str, Path], tmp_path: Path) -> None:
    text = issue(keys)
    assert text.startswith("CT1:")
    note = tmp_path / "trust.note"
    r = run("trust", "--root-key", keys["root"], "--out", note,
            "--add", f"{ISSUER}={keys['mine_pub']}", "--not-before", "2026-01-01T00:00:00Z")
    assert r.exit_code == 0, r.output
    r = run("verify", text, "--trust", note, "--root", keys["root_pub"], *NOW)
    assert r.exit_code == 0, r.output
    assert "VALID: ok" in r.stdout and "陕K8A3B2" in r.stdout and "34500" in r.stdout
    r = run("verify", "-", "--trust", note, "--root", keys["root_pub"], *NOW, "--json",
            input=text + "\n")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and out["ok"] and out["trust_list_checked"]
    assert out["ticket"]["buyer"] == "鑫源兰炭"


def test_verify_invalid_exits_1(keys: dict[str, Path]) -> None:
    text = issue(keys)
    tampered = text[:-8] + ("0" if text[-8] != "0" else "1") + text[-7:]
    r = run("verify", tampered, "--trust", keys["mine_pub"], *NOW)
    assert r.exit_code == 1 and "INVALID" in r.stdout
    r = run("verify", text, "--trust", keys["mine_pub"], "--now", "2026-11-09T00:00:00Z")
    assert r.exit_code == 1 and "expired" in r.stdout
    r = run("verify", text, "--trust", keys["mine_pub"], *NOW, "--plate", "晋A12345")
    assert r.exit_code == 1 and "wrong_plate" in r.stdout
    r = run("verify", text, "--trust", keys["mine_pub"], *NOW, "--site", "S9")
    assert r.exit_code == 1 and "wrong_site" in r.stdout
    r = run("verify", "hello", "--trust", keys["mine_pub"])
    assert r.exit_code == 1 and "malformed" in r.stdout


def test_verify_warns_when_list_not_checked(keys: dict[str, Path]) -> None:
    r = run("verify", issue(keys), "--trust", keys["mine_pub"], *NOW)
    assert r.exit_code == 0 and "NOT checked" in r.stderr


def test_trust_wrong_root_and_missing_file(keys: dict[str, Path], tmp_path: Path) -> None:
    note = tmp_path / "trust.note"
    assert run("trust", "--root-key", keys["root"], "--out", note,
               "--add", f"{ISSUER}={keys['mine_pub']}").exit_code == 0
    r = run("verify", issue(keys), "--trust", note, "--root", keys["mine_pub"])
    assert r.exit_code == 2 and "trust list" in r.stderr
    r = run("verify", issue(keys), "--trust", tmp_path / "nope")
    assert r.exit_code == 2 and "cannot read" in r.stderr


def test_trust_rotation(keys: dict[str, Path], tmp_path: Path) -> None:
    note, note2 = tmp_path / "t1.note", tmp_path / "t2.note"
    run("trust", "--root-key", keys["root"], "--out", note, "--add",
        f"{ISSUER}={keys['mine_pub']}", "--not-before", "2026-01-01T00:00:00Z")
    kid = SignerKey(ISSUER, bytes(range(32))).key_id.hex()
    new = SignerKey(ISSUER, bytes(range(40, 72)))
    r = run("trust", "--root-key", keys["root"], "--from", note, "--out", note2,
            "--add", f"{ISSUER}={new.verifier.to_text()}",
            "--not-before", "2026-11-05T08:30:00Z", "--retire", f"{kid}=2026-11-05T08:30:00Z")
    assert r.exit_code == 0, r.output
    rotated = TrustList.open(note2.read_text(), [SignerKey("bureau-root",
                                                           bytes(range(1, 33))).verifier])
    assert rotated.serial == 3 and len(rotated.keys) == 2
    assert run("verify", issue(keys), "--trust", note2, "--root", keys["root_pub"],
               *NOW).exit_code == 0
    r = run("trust", "--root-key", keys["root"], "--out", tmp_path / "x", "--remove", "zz")
    assert r.exit_code == 2 and "8 hex digits" in r.stderr


@pytest.mark.parametrize("suffix,magic", [("png", b"\x89PNG"), ("svg", b"<?xml"),
                                          ("pdf", b"%PDF")])
def test_qr(keys: dict[str, Path], tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"ticket.{suffix}"
    r = run("qr", issue(keys), "--out", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(magic) and "version 12" in r.stdout


def test_qr_refuses_garbage_and_unknown_format(tmp_path: Path, keys: dict[str, Path]) -> None:
    assert run("qr", "CT1:ZZ", "--out", tmp_path / "a.png").exit_code == 2
    assert run("qr", issue(keys), "--out", tmp_path / "a.gif").exit_code == 2


def test_issue_refuses_oversized_and_bad_fields(keys: dict[str, Path]) -> None:
    args = [a if a != "鑫源兰炭" else "府谷县鑫源兰炭有限责任公司第二分公司销售部" for a in ISSUE]
    r = run(*args, "--key", keys["mine"])
    assert r.exit_code == 2 and "version" in r.stderr
    assert run(*args, "--key", keys["mine"], "--allow-large").exit_code == 0
    r = run(*[a if a != "34500" else "0" for a in ISSUE], "--key", keys["mine"])
    assert r.exit_code == 2 and "planned net" in r.stderr


def test_issue_normalises_the_plate_or_refuses_it(keys: dict[str, Path]) -> None:
    args = [a if a != "陕K8A3B2" else "陕k·8a3b2" for a in ISSUE]
    r = run(*args, "--key", keys["mine"])
    assert r.exit_code == 0, r.output
    assert parse_ticket(r.stdout.strip()).ticket.plate == "陕K8A3B2"
    r = run(*[a if a != "陕K8A3B2" else "ABC123" for a in ISSUE], "--key", keys["mine"])
    assert r.exit_code == 2
    assert "车牌号无效（--plate）" in r.stderr
    assert "陕K12345" in r.stderr and "晋B1234挂" in r.stderr


def test_every_command_has_an_example() -> None:
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert "Example:" in (command.help or ""), name


def test_registered_in_coalgate_root(keys: dict[str, Path]) -> None:
    """Through the real ``coalgate`` entry point: the group is registered and exit codes hold."""
    import subprocess
    import sys

    text = issue(keys)
    base = [sys.executable, "-m", "coalgate", "ticket", "verify"]
    ok = subprocess.run([*base, text, "--trust", str(keys["mine_pub"]), *NOW],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "VALID: ok" in ok.stdout
    bad = subprocess.run([*base, text[:-3], "--trust", str(keys["mine_pub"]), *NOW],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "INVALID" in bad.stdout
