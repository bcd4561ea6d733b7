"""An in-process MQTT broker (amqtt) for one-machine runs: `coalgate demo` and tests.

amqtt speaks MQTT 3.1.1 only — no v5, so no ``$share`` shared subscriptions: clients connect
with ``MqttSettings(protocol="3.1.1")`` and a single ingest worker subscribes plainly.
Production uses Mosquitto or EMQX (config/mosquitto/, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

__all__ = ["BrokerError", "EmbeddedBroker", "free_port"]


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

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
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
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }
        self._broker = Broker(config, loop=asyncio.get_running_loop())
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps OSError (port in use) in BrokerError
            self._broker = None
            raise BrokerError(
                f"could not start the embedded MQTT broker on {self.host}:{self.port}: {exc}; "
                "choose another port (--mqtt-port) or stop what is listening there"
            ) from exc

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
