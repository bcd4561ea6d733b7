"""MQTT brokers for tests: the system Mosquitto and private Mosquitto processes.

* ``system_broker``: MqttSettings for the Mosquitto at 127.0.0.1:1883 (``scripts/setup test``
  starts it); missing → the test fails.
* ``mosquitto``: a factory for private Mosquitto instances on free ports (ACLs, restarts).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.sync.mqtt import MqttSettings
from tests.support.net import free_port, wait_port


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a broker process, killing it if it has not exited within 5 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def system_broker() -> MqttSettings:
    try:
        wait_port(1883, timeout=2)
    except AssertionError:
        pytest.fail("Mosquitto at 127.0.0.1:1883 is required (scripts/setup test starts it)")
    return MqttSettings(host="127.0.0.1", port=1883)


class Mosquitto:
    """A private Mosquitto process on a fixed free port; stop()/start() keep the port."""

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("the mosquitto binary is required (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            # stay root: pytest's tmp dirs are private to root (mosquitto would drop to its user)
            "user root\n"
            f"listener {self.port} 127.0.0.1\n"
            f"persistence true\npersistence_location {workdir}/\n"
            "max_queued_messages 100000\n"
            f"log_dest file {workdir}/mosquitto.log\n" + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
        except AssertionError:
            log = self.workdir / "mosquitto.log"
            raise AssertionError(
                f"mosquitto did not start on port {self.port}; "
                f"log: {log.read_text() if log.exists() else '(none)'}"
            ) from None

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def settings(self, username: str | None = None, password: str | None = None) -> MqttSettings:
        return MqttSettings(host="127.0.0.1", port=self.port, username=username,
                            password=password, keepalive=5)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    started: list[Mosquitto] = []

    def factory(extra_conf: str = "allow_anonymous true\n", start: bool = True) -> Mosquitto:
        m = Mosquitto(tmp_path / f"mosquitto{len(started)}", extra_conf)
        started.append(m)
        if start:
            m.start()
        return m

    yield factory
    for m in started:
        m.stop()


def shipped_accounts(workdir: Path, users: dict[str, str]) -> str:
    """Mosquitto config lines for the shipped accounts (config/mosquitto/: dynamic-security
    plugin, one role and one bound client id ``edge-<site>`` per site) for ``users`` — the
    ``central`` entry and one per site — to pass as a private Mosquitto's ``extra_conf``."""
    from central.broker_accounts import CENTRAL_USER, dynsec_document, write_dynsec

    plugin = next((line.split(None, 1)[1] for line in
                   (Path(__file__).resolve().parents[2] / "config" / "mosquitto"
                    / "mosquitto.conf").read_text().splitlines()
                   if line.startswith("plugin ")), None)
    assert plugin, "config/mosquitto/mosquitto.conf names no plugin"
    sites = {u: pw for u, pw in users.items() if u != CENTRAL_USER}
    path = write_dynsec(workdir / "dynamic-security.json",
                        dynsec_document(users[CENTRAL_USER], sites))
    return f"allow_anonymous false\nplugin {plugin}\nplugin_opt_config_file {path}\n"
