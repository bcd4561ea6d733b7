"""``coalgate ledger`` through the real console entry point, and the outsider's verifier."""

from __future__ import annotations

import ast
import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import merkle

REPO = Path(__file__).resolve().parents[2]
VERIFY_EXPORT = REPO / "scripts" / "verify_export.py"


def coalgate(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "coalgate", "ledger", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Built once through the CLI: three weighings and a checkpoint."""
    tmp_path = tmp_path_factory.mktemp("template")
    key, db = tmp_path / "mine-a.key", tmp_path / "mine-a.db"
    verifier = coalgate("keygen", "--name", "mine-a", "--out", key).stdout.strip()
    assert verifier.startswith("mine-a+")
    assert (key.stat().st_mode & 0o777) == 0o600
    for i, w in enumerate((41000, 42000, 43000)):
        out = coalgate("append", db, "--key", key, "--site", "mine-a", "--kind", "weighing",
                       "--body", json.dumps({"txn": f"t{i}", "gross_kg": w}))
        assert json.loads(out.stdout)["seq"] == i
    note = coalgate("checkpoint", db, "--key", key).stdout
    assert note.startswith("coalgate/mine-a\n3\n")
    return db, key, verifier


@pytest.fixture()
def site(template: tuple[Path, Path, str], tmp_path: Path) -> tuple[Path, Path, str]:
    """A private copy of the template ledger; returns (db, key file, verifier)."""
    db, key, verifier = template
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    new_db, new_key = tmp_path / db.name, tmp_path / key.name
    shutil.copyfile(db, new_db)
    shutil.copyfile(key, new_key)
    os.chmod(new_key, 0o600)
    return new_db, new_key, verifier


def test_verify_ok_and_prove(site: tuple[Path, Path, str]) -> None:
    db, _, verifier = site
    out = coalgate("verify", db, "--key", verifier).stdout
    assert "verify: OK — 3 entries, 1 checkpoints" in out
    proof = json.loads(coalgate("prove", db, "--seq", "1").stdout)
    assert proof["size"] == 3
    b = base64.b64decode
    merkle.verify_inclusion(1, 3, b(proof["leaf_hash"]), [b(p) for p in proof["proof"]],
                            b(proof["root"]))
    coalgate("prove", db, "--seq", "9", ok=False)


def test_bad_input_gives_clear_errors_and_leaves_store_unchanged(site, tmp_path) -> None:
    db, key, verifier = site
    for body, words in [
        ('{"gross_kg": 41000', "not valid JSON"),
        ('{"gross_kg": 41000.5}', "not an integer"),
        ('{"seq": 9, "gross_kg": 1}', "assigns seq"),
        ('[1, 2]', "JSON object"),
    ]:
        err = coalgate("append", db, "--key", key, "--kind", "weighing", "--body", body,
                       ok=False).stderr
        assert words in err
    assert "3 entries" in coalgate("verify", db, "--key", verifier).stdout
    assert "already exists" in coalgate("keygen", "--name", "x", "--out", key, ok=False).stderr
    err = coalgate("append", tmp_path / "new.db", "--key", key, "--kind", "weighing",
                   "--body", "{}", ok=False).stderr
    assert "--site" in err
    err = coalgate("verify", db, "--key", "mine-a+00000000+AQID", ok=False).stderr
    assert "33 bytes" in err


def test_group_readable_key_is_refused(site: tuple[Path, Path, str]) -> None:
    db, key, _ = site
    os.chmod(key, 0o640)
    err = coalgate("append", db, "--key", key, "--kind", "weighing", "--body", "{}",
                   ok=False).stderr
    assert "chmod 600" in err


def test_verify_names_first_bad_seq(site: tuple[Path, Path, str]) -> None:
    db, _, verifier = site
    conn = sqlite3.connect(db)
    with conn:
        leaf = conn.execute("SELECT leaf FROM entries WHERE seq = 1").fetchone()[0]
        conn.execute("UPDATE entries SET leaf = ? WHERE seq = 1",
                     (bytes(leaf).replace(b"42000", b"32000"),))
    conn.close()
    err = coalgate("verify", db, "--key", verifier, ok=False).stderr
    assert "FAILED at seq 1" in err and "signature" in err


def test_verify_of_truncated_file_fails_cleanly(site: tuple[Path, Path, str]) -> None:
    db, _, verifier = site
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    err = coalgate("verify", db, "--key", verifier, ok=False).stderr
    assert "FAILED" in err and "truncated" in err


def run_verify_export(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, no site-packages path tricks from the environment, no cwd on sys.path.
    return subprocess.run([sys.executable, "-I", str(VERIFY_EXPORT), *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd="/")


def test_export_is_verifiable_without_coalgate(site, tmp_path: Path) -> None:
    db, _, verifier = site
    export = tmp_path / "export.jsonl"
    coalgate("export", db, "--out", export)
    lines = export.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and "checkpoint" in json.loads(lines[-1])
    ok = run_verify_export(export, "--key", verifier, "--site", "mine-a")
    assert ok.returncode == 0 and "OK: 3 entries and 1 checkpoints" in ok.stdout, ok.stderr

    # A weight edited in the export.
    bad = tmp_path / "edited.jsonl"
    bad.write_text(export.read_text(encoding="utf-8").replace("43000", "33000", 1))
    proc = run_verify_export(bad, "--key", verifier)
    assert proc.returncode == 1 and "line 3" in proc.stderr

    # The newest entry dropped: the checkpoint catches it.
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    proc = run_verify_export(short, "--key", verifier)
    assert proc.returncode == 1 and "removed" in proc.stderr

    # The wrong key.
    other = coalgate("keygen", "--name", "mine-a", "--out", tmp_path / "o.key").stdout.strip()
    proc = run_verify_export(export, "--key", other)
    assert proc.returncode == 1 and "signature" in proc.stderr


def test_verify_export_imports_only_stdlib_and_cryptography() -> None:
    tree = ast.parse(VERIFY_EXPORT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_every_command_help_has_an_example() -> None:
    from ledger.cli import app

    for command in app.registered_commands:
        assert command.callback is not None
        assert "Example:" in (command.callback.__doc__ or ""), command.callback.__name__


def test_group_help_through_the_root_command() -> None:
    out = coalgate("--help").stdout
    for command in ("keygen", "append", "checkpoint", "verify", "prove", "export"):
        assert command in out
