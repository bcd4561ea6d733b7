"""The gate's [mqtt] and [tickets] config, mapped to the outbox and the ticket verifier, and the
outbox's persistent session (ticket deltas published while the gate is away reach it)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import ConfigError, file_problems, load_config
from edge_agent.sync.mqtt import GATE_SESSION_EXPIRY_S, MqttSettings, make_client
from edge_agent.sync.outbox import Outbox
from edge_agent.sync.protocol import topic
from ledger.keys import SignerKey
from ledger.store import LedgerStore
from tests.central.sync_helpers import wait_until
from tests.support.broker import Mosquitto

BASE = """
[site]
id = "sxym-001"
key = "keys/site.key"
[scale]
protocol = "xk3190"
transport = "serial"
device = "/dev/ttyUSB0"
"""
ROOT = SignerKey("bureau-root", bytes(range(100, 132)))


def _load(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "conf" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(BASE + extra, encoding="utf-8")
    return load_config(path)


def test_mqtt_section_maps_protocol_tls_and_resolves_paths(tmp_path: Path) -> None:
    cfg = _load(tmp_path, """
[mqtt]
host = "central.example.org"
port = 8883
protocol = "3.1.1"
username = "sxym-001"
password_file = "../var/mqtt.password"
tls = true
tls_ca = "ca.pem"
tls_cert = "/etc/coalgate/gate.crt"
tls_key = "/etc/coalgate/gate.key"
""")
    conf = tmp_path / "conf"
    assert cfg.mqtt.password_file == str((tmp_path / "var" / "mqtt.password").resolve())
    s = cfg.mqtt.settings("secret")
    assert isinstance(s, MqttSettings)
    assert (s.host, s.port, s.protocol, s.username, s.password) == (
        "central.example.org", 8883, "3.1.1", "sxym-001", "secret")
    assert s.uses_tls and s.tls_ca == (conf / "ca.pem").resolve()
    assert s.tls_cert == Path("/etc/coalgate/gate.crt") and not s.shared_subscriptions
    problems = file_problems(cfg)
    assert any("(mqtt.password_file)" in p for p in problems)
    assert any("(mqtt.tls_ca)" in p for p in problems)


def test_mqtt_defaults_to_v5_without_tls(tmp_path: Path) -> None:
    s = _load(tmp_path, '[mqtt]\nhost = "h"\n').mqtt.settings(None)
    assert s.protocol == "5" and not s.uses_tls and s.shared_subscriptions


@pytest.mark.parametrize(("extra", "expected"), [
    ('protocol = "4"', "Expected one of '5' or '3.1.1', got '4' (mqtt.protocol)"),
    ('tls_ca = "ca.pem"', "tls_ca set but tls = false; set tls = true or remove them (mqtt)"),
    ('tls = true\ntls_key = "k.pem"', "tls_key needs tls_cert"),
])
def test_bad_mqtt_settings_are_explained(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, f'[mqtt]\nhost = "h"\n{extra}\n')
    assert any(expected in p for p in exc.value.problems), exc.value.problems


def test_trust_roots_from_key_text_and_file(tmp_path: Path) -> None:
    other = SignerKey.generate("bureau-root-2")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "root2.pub").write_text(other.verifier.to_text() + "\n")
    cfg = _load(tmp_path, f"""
[tickets]
site = "S61082101"
trust_roots = ["{ROOT.verifier.to_text()}", "../keys/root2.pub"]
""")
    assert cfg.tickets.trust_root_keys() == [ROOT.verifier, other.verifier]
    assert cfg.tickets.site == "S61082101"


def test_bad_trust_roots_are_explained(tmp_path: Path) -> None:
    text = ROOT.verifier.to_text()
    altered = text[:-2] + ("AA" if not text.endswith("AA") else "BB")
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, f'[tickets]\ntrust_roots = ["{altered}"]\n')
    assert "is not a valid verifier key" in exc.value.problems[0]
    assert "(tickets)" in exc.value.problems[0]
    cfg = _load(tmp_path, '[tickets]\ntrust_roots = ["missing.pub"]\n')
    assert any("tickets.trust_roots[0]" in p for p in file_problems(cfg))
    with pytest.raises(ConfigError) as exc2:
        cfg.tickets.trust_root_keys()
    assert "tickets.trust_roots[0]" in exc2.value.problems[0]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_deltas_published_while_the_gate_is_away_reach_it(tmp_path: Path,
                                                          protocol: str) -> None:
    broker = Mosquitto(tmp_path / "broker", "allow_anonymous true\n")
    broker.start()
    settings = MqttSettings(host="127.0.0.1", port=broker.port, keepalive=5, protocol=protocol)
    signer = SignerKey.generate("sxym-001")
    store = LedgerStore.open(tmp_path / "l.sqlite", site="sxym-001", signer=signer)
    got: list[dict[str, Any]] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def on_tickets(delta: dict[str, Any]) -> None:
        with lock:
            got.append(delta)
            threads.add(threading.current_thread().name)

    def outbox() -> Outbox:
        return Outbox(store, "sxym-001", settings, signer=signer, poll_interval=0.05,
                      on_tickets=on_tickets, session_expiry_s=GATE_SESSION_EXPIRY_S,
                      client_id=f"edge-sxym-001-{protocol}")

    central = make_client(settings, f"central-{protocol}")
    central.connect(settings.host, settings.port, 5)
    central.loop_start()

    def publish(ticket_id: str) -> None:
        info = central.publish(topic("sxym-001", "tickets"),
                               json.dumps({"v": 1, "type": "revoked", "ticket_id": ticket_id,
                                           "at": "2026-11-05T08:30:00Z", "reason": "x"}),
                               qos=1)
        info.wait_for_publish(5)

    box = outbox()
    try:
        box.start()
        wait_until(lambda: box.connected, 20, "the gate online")
        publish("T-online")  # proves the subscription is in place before the gate leaves
        wait_until(lambda: len(got) == 1, 20, "the delta sent while online")
        box.stop()
        for i in range(3):  # the gate is away: the broker queues these in its session
            publish(f"T{i}")
        box = outbox()  # the same client id again
        box.start()
        wait_until(lambda: len(got) == 4, 20, "the queued deltas")
        assert [d["ticket_id"] for d in got] == ["T-online", "T0", "T1", "T2"]
        assert threads == {"outbox-sxym-001"}  # applied in the outbox thread
    finally:
        box.stop()
        central.disconnect()
        central.loop_stop()
        store.close()
        broker.stop()
