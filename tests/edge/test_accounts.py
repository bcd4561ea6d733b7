"""Gate console accounts: the store (argon2id, 0600), `coalgate edge user ...`, the console
warnings of `coalgate edge check-config`, and the console served over TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edge_agent.accounts import AccountError, AccountStore
from edge_agent.cli import app as edge_app
from tests.edge.test_console import PASSWORDS, start_agent

runner = CliRunner()


def test_store_hashes_with_argon2id_in_a_private_file(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "var" / "accounts.sqlite")
    store.add("张三", "operator", "correct horse")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    raw = store.path.read_bytes()
    assert b"$argon2id$" in raw and b"correct horse" not in raw
    acct = store.verify("张三", "correct horse")
    assert acct is not None and acct.role == "operator"
    assert store.verify("张三", "wrong horse!") is None
    assert store.verify("nobody", "correct horse") is None
    store.disable("张三")
    assert store.verify("张三", "correct horse") is None
    store.set_password("张三", "new password 2")  # enables it again
    assert store.verify("张三", "new password 2") is not None
    with pytest.raises(AccountError, match="at least 8"):
        store.add("li", "operator", "short")
    with pytest.raises(AccountError, match="not allowed"):
        store.add("li si", "operator", "long enough")
    with pytest.raises(AccountError, match="role"):
        store.add("lisi", "admin", "long enough")
    with pytest.raises(AccountError, match="already exists"):
        store.add("张三", "supervisor", "long enough")


def _site(tmp_path: Path, console: str = "") -> Path:
    from ledger.keys import SignerKey, write_signer_file

    if not (tmp_path / "site.key").exists():
        write_signer_file(tmp_path / "site.key", SignerKey.generate("acct-site"))
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[site]
id = "acct-site"
key = "site.key"
ledger = "ledger.sqlite"
[scale]
protocol = "xk3190"
transport = "tcp"
host = "127.0.0.1"
port = 4001
[console]
accounts = "accounts.sqlite"
{console}
""", encoding="utf-8")
    return cfg


def test_user_cli_add_passwd_list_disable(tmp_path: Path) -> None:
    cfg = str(_site(tmp_path))
    r = runner.invoke(edge_app, ["user", "add", "zhangsan", "--role", "operator", "-c", cfg,
                                 "--password-stdin"], input="op-password-1\n")
    assert r.exit_code == 0 and "added zhangsan (operator)" in r.output, r.output
    # Prompted twice when not from stdin; a mismatch is asked again.
    r = runner.invoke(edge_app, ["user", "add", "lisi", "--role", "supervisor", "-c", cfg],
                      input="sup-password-2\nsup-password-2\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(edge_app, ["user", "add", "wangwu", "--role", "boss", "-c", cfg,
                                 "--password-stdin"], input="whatever-123\n")
    assert r.exit_code == 1 and "role 'boss'" in r.output
    r = runner.invoke(edge_app, ["user", "passwd", "zhangsan", "-c", cfg, "--password-stdin"],
                      input="op-password-new\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(edge_app, ["user", "passwd", "nobody", "-c", cfg, "--password-stdin"],
                      input="op-password-new\n")
    assert r.exit_code == 1 and "no account 'nobody'" in r.output
    assert runner.invoke(edge_app, ["user", "disable", "lisi", "-c", cfg]).exit_code == 0
    r = runner.invoke(edge_app, ["user", "list", "-c", cfg])
    assert r.exit_code == 0
    assert "lisi\tsupervisor\tdisabled" in r.output and "zhangsan\toperator\tenabled" in r.output
    assert "argon2" not in r.output and "$" not in r.output  # never the hashes
    store = AccountStore(tmp_path / "accounts.sqlite")
    assert store.verify("zhangsan", "op-password-new") is not None


def test_check_config_warns_about_exposed_console_and_no_accounts(tmp_path: Path) -> None:
    cfg = _site(tmp_path, 'host = "0.0.0.0"')
    r = runner.invoke(edge_app, ["check-config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "without TLS" in r.output and "no operator accounts" in r.output
    assert "allowed_hosts" in r.output
    AccountStore(tmp_path / "accounts.sqlite").add("lisi", "supervisor", "sup-password-2")
    cfg = _site(tmp_path)  # loopback: no TLS needed; an account exists
    r = runner.invoke(edge_app, ["check-config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "without TLS" not in r.output and "no operator accounts" not in r.output
    assert "camera.push_secret_file is not set" in r.output  # pushes would all be refused


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "console.crt", tmp_path / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_console_serves_tls_with_a_secure_cookie(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    agent: dict[str, Any] = start_agent(
        tmp_path, f'tls_cert = "{cert.name}"\ntls_key = "{key.name}"')
    try:
        url = agent["url"].replace("http://", "https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=20) as c:
            r = c.post(url + "/api/login", json={"name": "zhangsan",
                                                 "password": PASSWORDS["zhangsan"]})
            assert r.status_code == 200
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            # Same-origin over https: the Origin must say https.
            r = c.post(url + "/api/logout", json={}, headers={
                "X-CSRF-Token": r.json()["csrf"], "Origin": agent["url"]})
            assert r.status_code == 403
        with pytest.raises(httpx.HTTPError):
            httpx.get(agent["url"] + "/api/state", timeout=5)  # no plain HTTP beside it
    finally:
        agent["stop"]()
