"""An in-process MQTT broker (amqtt) for one-machine runs: `coalgate demo` and tests.

amqtt speaks MQTT 3.1.1 only — no v5, so no ``$share`` shared subscriptions: clients connect
with ``MqttSettings(protocol="3.1.1")`` and a single ingest worker subscribes plainly.
Production uses Mosquitto or EMQX (config/mosquitto/, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "site_acls"]


class BrokerError(Exception):
    """The embedded broker could not start (port taken, amqtt missing)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; a tiny race is accepted)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt on ``host:port`` (port 0: a free one), anonymous, only the plugins it needs.

    Use inside a running event loop: ``await broker.start()`` … ``await broker.stop()``.
    The default amqtt plugins (packet and event loggers, $SYS) halve its throughput.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: Mapping[str, str] | None = None,
        publish_acl: Mapping[str, Sequence[str]] | None = None,
        subscribe_acl: Mapping[str, Sequence[str]] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """``users`` (name → password) turns anonymous access off; the ACLs map a user to the
        topic filters it may publish to / subscribe to (what config/mosquitto/acl does for
        Mosquitto). The password file (Argon2 hashes) is written to ``state_dir``."""
        self.host = host
        self.port = port or free_port(host)
        self._users = dict(users or {})
        self._publish_acl = {u: list(t) for u, t in (publish_acl or {}).items()}
        self._subscribe_acl = {u: list(t) for u, t in (subscribe_acl or {}).items()}
        if self._users and state_dir is None:
            raise ValueError("users need a state_dir for the broker's password file")
        self._state_dir = state_dir
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise BrokerError("the amqtt package is missing; pip install amqtt") from exc
        # amqtt logs every connection at INFO and a traceback for each abrupt disconnect.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        plugins: dict[str, Any] = {}
        if self._users:
            assert self._state_dir is not None
            plugins["amqtt.plugins.authentication.FileAuthPlugin"] = {
                "password_file": str(self._write_passwords(self._state_dir))}
        else:
            plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {
                "allow_anonymous": True}
        if self._publish_acl or self._subscribe_acl:
            plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
                "publish_acl": self._publish_acl, "acl": self._subscribe_acl}
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": plugins,
        }
        with warnings.catch_warnings():
            # amqtt 0.12 names the subscribe ACL "acl" in its config class and warns that the
            # name is deprecated in the same breath.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._broker = Broker(config, loop=asyncio.get_running_loop())
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps OSError (port in use) in BrokerError
            self._broker = None
            raise BrokerError(
                f"could not start the embedded MQTT broker on {self.host}:{self.port}: {exc}; "
                "stop what is listening there, or let the port be chosen (port 0)"
            ) from exc

    def _write_passwords(self, directory: Path) -> Path:
        from pwdlib.hashers.argon2 import Argon2Hasher

        # Cheap Argon2 parameters: these are throwaway local passwords, hashed at every start.
        hasher = Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "broker.passwd"
        lines = [f"{user}:{hasher.hash(pw)}" for user, pw in sorted(self._users.items())]
        from ledger.private_file import write_private

        return write_private(path, "\n".join(lines) + "\n")

    async def stop(self) -> None:
        if self._broker is None:
            return
        broker, self._broker = self._broker, None
        try:
            await asyncio.wait_for(broker.shutdown(), 10)
        except (TimeoutError, Exception):  # shutting down: report nothing, leave no socket
            for server in getattr(broker, "_servers", {}).values():
                close = getattr(server, "close_instance", None)
                if close is not None:
                    await close()


def site_acls(sites: Sequence[str], central_user: str = "central"
              ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Publish and subscribe ACLs of config/mosquitto/acl: a site only under its own topic."""
    root = "coalgate/v1/sites"
    publish = {s: [f"{root}/{s}/{ch}" for ch in ("ledger", "checkpoint", "live", "status")]
               for s in sites}
    subscribe = {s: [f"{root}/{s}/{ch}" for ch in ("ack", "cmd", "tickets")] for s in sites}
    publish[central_user] = [f"{root}/+/{ch}" for ch in ("ack", "cmd", "tickets")]
    subscribe[central_user] = [f"{root}/+/{ch}" for ch in ("ledger", "checkpoint", "status",
                                                          "live")]
    return publish, subscribe
