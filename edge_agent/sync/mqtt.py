"""MQTT connection settings and a configured paho-mqtt 2.x client, shared by edge and central."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["MqttSettings", "MqttConfigError", "make_client"]


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
        return cls(
            host=get("host", str, "127.0.0.1"),
            port=port,
            username=get("username", str, None),
            password=get("password", str, None),
            tls_ca=path("tls_ca"),
            tls_cert=path("tls_cert"),
            tls_key=path("tls_key"),
            keepalive=get("keepalive", int, 30),
        )


def make_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho MQTT v5 client with credentials and TLS applied (not yet connected)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
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
