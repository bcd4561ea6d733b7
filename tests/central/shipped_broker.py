"""The shipped config/mosquitto/mosquitto.conf, started for a test: same lines, with its paths
moved into the test's directory, its two ports free ones on loopback, and a test PKI.

TLS material is made here with ``cryptography``: a CA, a server certificate for 127.0.0.1 /
localhost, client certificates on demand, and an unrelated "wrong" CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.broker_accounts import dynsec_document, write_dynsec
from edge_agent.sync.mqtt import MqttSettings
from ledger.private_file import write_private
from tests.central.sync_helpers import REPO
from tests.support.broker import stop_process
from tests.support.net import free_port, wait_port

SHIPPED_CONF = REPO / "config" / "mosquitto" / "mosquitto.conf"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Pki:
    """A CA that signs the broker's certificate and gates' client certificates."""

    directory: Path
    cn: str = "coalgate test CA"
    key: ec.EllipticCurvePrivateKey = field(init=False)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(self.cn)).issuer_name(_name(self.cn))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.directory / "ca.crt"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool) -> tuple[Path, Path]:
        """A certificate and its key (0600) for ``cn``: the broker's or a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file = self.directory / f"{cn}.crt"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = write_private(self.directory / f"{cn}.key", _key_pem(key))
        return cert_file, key_file


class ShippedBroker:
    """Mosquitto running config/mosquitto/mosquitto.conf with its accounts from
    ``central.broker_accounts`` (the code behind ``coalgate central broker-accounts``)."""

    def __init__(self, workdir: Path, central_password: str, sites: dict[str, str], *,
                 client_certs: bool = False) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("the mosquitto binary is required (apt-get install mosquitto)")
        self.exe = exe
        self.workdir = workdir
        etc, var = workdir / "etc", workdir / "var"
        (etc / "tls").mkdir(parents=True, exist_ok=True)
        var.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(etc / "tls")
        cert, key = self.pki.issue("server", server=True)
        cert.rename(etc / "tls" / "server.crt")
        key.rename(etc / "tls" / "server.key")
        write_dynsec(var / "dynamic-security.json", dynsec_document(central_password, sites))
        self.port, self.tls_port = free_port(), free_port()
        text = SHIPPED_CONF.read_text()
        for old, new in (
            ("/etc/mosquitto/coalgate/", f"{etc}/"),
            ("/var/lib/mosquitto/", f"{var}/"),
            ("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1"),
            ("listener 8883", f"listener {self.tls_port} 127.0.0.1"),
            ("log_dest syslog", f"log_dest file {workdir}/mosquitto.log"),
        ):
            assert old in text, f"the shipped mosquitto.conf no longer has {old!r}"
            text = text.replace(old, new)
        if client_certs:
            assert "#require_certificate true" in text
            text = text.replace("#require_certificate true", "require_certificate true")
        # stay root: pytest's tmp dirs are private to root (mosquitto would drop to its user)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("user root\n" + text)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ShippedBroker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
            wait_port(self.tls_port)
        except AssertionError:
            log = self.workdir / "mosquitto.log"
            raise AssertionError(
                f"the shipped mosquitto.conf did not start (ports {self.port}, {self.tls_port});"
                f" log: {log.read_text() if log.exists() else '(none)'}"
            ) from None
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text() if path.exists() else ""

    def plain(self, username: str, password: str) -> MqttSettings:
        """The loopback listener (the central's)."""
        return MqttSettings(host="127.0.0.1", port=self.port, username=username,
                            password=password, keepalive=5)

    def tls(self, username: str | None, password: str | None, *, ca: Path | None = None,
            cert: Path | None = None, key: Path | None = None) -> MqttSettings:
        """The TLS listener (the gates'), verifying the broker with ``ca`` (default: ours)."""
        return MqttSettings(host="127.0.0.1", port=self.tls_port, username=username,
                            password=password, keepalive=5, tls=True,
                            tls_ca=ca or self.pki.ca_file, tls_cert=cert, tls_key=key)
