"""MQTT connection settings and a configured paho-mqtt 2.x client, shared by edge and central."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = [
    "MQTT_PROTOCOLS",
    "PROTOCOL_ENV",
    "MqttConfigError",
    "MqttSettings",
    "connect_async",
    "make_client",
]

# "5" (default): MQTT v5, needed for shared subscriptions ($share/<group>/...) so several
# ingest workers split the load. "3.1.1": brokers that speak only 3.1.1 (amqtt, the in-process
# broker of `coalgate demo`); there a single ingest worker subscribes without $share.
MQTT_PROTOCOLS = ("5", "3.1.1")
# Process-wide default for settings that do not name a protocol (e.g. a site config written
# before `[mqtt] protocol` existed); `coalgate demo` sets it for the gates it starts.
PROTOCOL_ENV = "COALGATE_MQTT_PROTOCOL"


def _default_protocol() -> str:
    return os.environ.get(PROTOCOL_ENV) or "5"


class MqttConfigError(ValueError):
    """An [mqtt] setting is missing or has the wrong type."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    # TLS: set tls_ca (the broker's CA bundle) to connect with TLS; cert/key for client certs.
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive: int = 30
    protocol: str = field(default_factory=_default_protocol)

    def __post_init__(self) -> None:
        if self.protocol not in MQTT_PROTOCOLS:
            raise MqttConfigError(
                f"MQTT protocol {self.protocol!r} is not supported; use \"5\" or \"3.1.1\""
            )

    @property
    def shared_subscriptions(self) -> bool:
        """Whether ``$share/<group>/…`` subscriptions are available (MQTT v5 only)."""
        return self.protocol == "5"

    @classmethod
    def from_mapping(cls, table: dict[str, Any], *, where: str = "mqtt") -> MqttSettings:
        def get(key: str, typ: type, default: Any) -> Any:
            value = table.get(key, default)
            if value is not None and not isinstance(value, typ):
                raise MqttConfigError(
                    f"Expected {typ.__name__} for [{where}].{key}, got {value!r}"
                )
            return value

        def path(key: str) -> Path | None:
            value = get(key, str, None)
            return Path(value) if value else None

        port = get("port", int, 1883)
        if not 0 < port < 65536:
            raise MqttConfigError(f"[{where}].port {port} is not a TCP port (1–65535)")
        protocol = get("protocol", str, _default_protocol())
        if protocol not in MQTT_PROTOCOLS:
            raise MqttConfigError(
                f"[{where}].protocol {protocol!r} is not supported; use \"5\" (default, "
                f"shared subscriptions) or \"3.1.1\" (brokers without MQTT v5, e.g. amqtt)"
            )
        return cls(
            host=get("host", str, "127.0.0.1"),
            port=port,
            username=get("username", str, None),
            password=get("password", str, None),
            tls_ca=path("tls_ca"),
            tls_cert=path("tls_cert"),
            tls_key=path("tls_key"),
            keepalive=get("keepalive", int, 30),
            protocol=protocol,
        )


def make_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho client (MQTT v5 or 3.1.1 per ``settings.protocol``) with credentials and TLS
    applied (not yet connected). Connect with :func:`connect_async`, which passes the
    protocol-specific session flag."""
    protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls_ca is not None:
        client.tls_set(
            ca_certs=str(settings.tls_ca),
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    # QoS 1 messages beyond this many in flight wait in paho's queue (memory only).
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect_async(client: mqtt.Client, settings: MqttSettings) -> None:
    """Start connecting with a fresh session: ``clean_start`` on v5, ``clean_session`` before.

    paho refuses ``clean_start`` on a 3.1.1 client (the session flag is set in the
    constructor there), so callers go through this one place.
    """
    if settings.protocol == "5":
        client.connect_async(settings.host, settings.port, settings.keepalive, clean_start=True)
    else:
        client.connect_async(settings.host, settings.port, settings.keepalive)
