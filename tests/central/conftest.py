"""Shared fixtures for central ingest and sync tests: real PostgreSQL, real Mosquitto.

* ``pg_url``: a throwaway database (random name) in the PostgreSQL at 127.0.0.1:5432 (user
  postgres, db test), migrated, dropped afterwards. Missing server → the test fails.
* ``system_broker``: MqttSettings for the Mosquitto at 127.0.0.1:1883 (must be running).
* ``mosquitto``: a factory for private Mosquitto instances on free ports (ACLs, restarts).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from central.db import migrate
from edge_agent.sync.mqtt import MqttSettings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _db_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = "coalgate_t_" + uuid.uuid4().hex[:12]
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 (db test, user postgres) is required: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(_db_url(name)) as conn:
            migrate(conn)
        yield _db_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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
