"""TLS end to end on the shipped broker config (real Mosquitto, certificates made in the test):
gate and central connect with the CA and sync; a client trusting another CA refuses the
broker; with client certificates required, only clients holding one from the CA get in."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.broker_accounts import gate_client_id
from central.ingest.settings import settings_from_mapping
from edge_agent.sync.mqtt import MqttSettings, make_client
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import topic
from tests.central.shipped_broker import Pki, ShippedBroker
from tests.central.sync_helpers import (
    audit_central,
    make_gate,
    start_worker,
    tare_body,
    unique,
    wait_until,
)
from tests.central.test_broker_hardening import NOT_AUTHORISED, Probe


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Any]:
    started: list[ShippedBroker] = []

    def factory(sites: dict[str, str], **kw: Any) -> ShippedBroker:
        b = ShippedBroker(tmp_path / f"broker{len(started)}", "c-secret", sites, **kw)
        started.append(b)
        return b

    yield factory
    for b in started:
        b.stop()


def _refused_by_tls(settings: MqttSettings) -> BaseException:
    """Connect synchronously and return the error the TLS handshake ended with."""
    client = make_client(settings, unique("tls"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as info:
        client.connect(settings.host, settings.port, 5)
        # a refused client certificate may only show on the first read after the handshake
        for _ in range(50):
            if client.loop(0.1) != 0:
                raise ConnectionError("broker closed the connection")
    client.disconnect()
    return info.value


def test_gate_and_central_sync_over_tls_and_a_wrong_ca_is_refused(
    pg_url: str, brokers: Any, tmp_path: Path
) -> None:
    gate = make_gate(pg_url, tmp_path, "mine")
    broker = brokers({gate.site: "g-secret"}).start()
    # the central over TLS too, configured the way central.toml does it (password_file, tls_ca)
    pw = tmp_path / "central.mqtt-password"
    pw.write_text("c-secret\n")
    pw.chmod(0o600)
    central = settings_from_mapping({"mqtt": {
        "host": "127.0.0.1", "port": broker.tls_port, "username": "central",
        "password_file": pw.name, "tls_ca": str(broker.pki.ca_file), "keepalive": 5,
    }}, base=tmp_path).mqtt
    assert central.uses_tls and central.password == "c-secret"
    worker = start_worker(pg_url, central, "ingest", tmp_path)
    store = gate.open()
    box = Outbox(store, gate.site, broker.tls(gate.site, "g-secret"), signer=gate.key,
                 poll_interval=0.05)
    box.start()
    try:
        for i in range(20):
            store.append("weighing", tare_body(gate.site, i))
        box.notify()
        wait_until(lambda: box.acked_seq == 19, 60, "20 entries acked over TLS")
    finally:
        box.stop()
        store.close()
        worker.halt()
    assert audit_central(pg_url, gate) == 20
    # a gate that trusts another CA refuses the broker's certificate
    other = Pki(tmp_path / "other-ca", cn="some other CA")
    err = _refused_by_tls(broker.tls(gate.site, "g-secret", ca=other.ca_file))
    assert isinstance(err, ssl.SSLCertVerificationError), err
    # plain MQTT on the TLS port gets nowhere (the broker expects a TLS handshake)
    probe = Probe(MqttSettings(host="127.0.0.1", port=broker.tls_port, username=gate.site,
                               password="g-secret", keepalive=5), gate_client_id(gate.site))
    with pytest.raises(AssertionError, match="no CONNACK"):
        probe.connect()
    probe.close()


def test_client_certificate_mode(brokers: Any, tmp_path: Path) -> None:
    """require_certificate (the commented line of the shipped conf): a gate needs a certificate
    from the CA and still its password; its login stays bound to its client id."""
    broker = brokers({"mine-a": "a-secret", "mine-b": "b-secret"}, client_certs=True).start()
    cert, key = broker.pki.issue("mine-a", server=False)
    good = Probe(broker.tls("mine-a", "a-secret", cert=cert, key=key), gate_client_id("mine-a"))
    try:
        assert good.connect() == 0
        assert good.subscribe(topic("mine-a", "ack")) == 1
        assert good.subscribe("$share/ingest/coalgate/v1/sites/+/ledger") == NOT_AUTHORISED
    finally:
        good.close()
    # the certificate does not replace the password, nor the client id binding
    nopw = Probe(broker.tls("mine-a", "wrong", cert=cert, key=key), gate_client_id("mine-a"))
    assert nopw.connect() in (0x86, 0x87)
    nopw.close()
    thief = Probe(broker.tls("mine-a", "a-secret", cert=cert, key=key), gate_client_id("mine-b"))
    assert thief.connect() == NOT_AUTHORISED
    thief.close()
    # no certificate, or one from another CA: refused in the handshake
    _refused_by_tls(broker.tls("mine-a", "a-secret"))
    rogue = Pki(tmp_path / "rogue-ca", cn="rogue CA")
    rcert, rkey = rogue.issue("mine-a", server=False)
    _refused_by_tls(broker.tls("mine-a", "a-secret", cert=rcert, key=rkey))


def test_identity_as_username_would_unbind_client_ids(brokers: Any) -> None:
    """Why the shipped conf keeps use_identity_as_username off (measured, Mosquitto 2.0.11):
    with it the broker takes the certificate's CN as the username and skips the password
    check — and with it the dynamic-security client-id binding, so site A's certificate could
    take site B's client id (and session). ACLs still apply by the CN. If this test starts to
    fail, Mosquitto changed: re-read docs/deployment.md "TLS" before turning the option on."""
    broker = brokers({"mine-a": "a-secret", "mine-b": "b-secret"}, client_certs=True)
    broker.conf.write_text(broker.conf.read_text().replace(
        "require_certificate true", "require_certificate true\nuse_identity_as_username true"))
    broker.start()
    cert, key = broker.pki.issue("mine-a", server=False)
    as_b = Probe(broker.tls(None, None, cert=cert, key=key), gate_client_id("mine-b"))
    try:
        assert as_b.connect() == 0  # the binding is gone
        assert as_b.subscribe(topic("mine-a", "ack")) == 1  # the CN's ACLs apply
        assert as_b.subscribe(topic("mine-b", "ack")) == NOT_AUTHORISED
    finally:
        as_b.close()
