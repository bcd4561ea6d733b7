"""MQTT connection settings and a configured paho-mqtt 2.x client, shared by edge and central."""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "GATE_SESSION_EXPIRY_S",
    "MQTT_PROTOCOLS",
    "PROTOCOL_ENV",
    "MqttConfigError",
    "MqttSettings",
    "connect_async",
    "make_client",
    "read_password_file",
    "session_properties",
]

# "5" (default): MQTT v5, needed for shared subscriptions ($share/<group>/...) so several
# ingest workers split the load. "3.1.1": brokers that speak only 3.1.1 (amqtt, the in-process
# broker of `coalgate demo`); there a single ingest worker subscribes without $share.
MQTT_PROTOCOLS = ("5", "3.1.1")
# Process-wide default for settings that do not name a protocol (e.g. a site config written
# before `[mqtt] protocol` existed); `coalgate demo` sets it for the gates it starts.
PROTOCOL_ENV = "COALGATE_MQTT_PROTOCOL"

# How long the broker keeps a gate's persistent session (its subscriptions and the QoS 1
# ticket deltas queued for it) while the gate is away. Longer than any ticket may be valid
# (max-validity-days 31): a revocation still matters then. central.tickets.distribution relies
# on gates connecting this way.
GATE_SESSION_EXPIRY_S = 35 * 24 * 3600


# Reconnect back-off bounds (seconds). paho doubles the wait after each failed attempt from the
# minimum up to the maximum and resets it on a successful CONNACK. paho's own default maximum is
# 120 s: after a long outage a gate could stay away up to two minutes after the broker is back.
# 10 s keeps that gap short while a dead broker costs each client one connection attempt per
# 10 s. Large fleets may raise the maximum ([mqtt] reconnect_max_s) to spread the reconnect
# storm after a broker restart (paho adds no jitter). See docs/deployment.md "Outages".
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10


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
    # TLS: on when ``tls`` is set or tls_ca (the broker's CA bundle) is given; without tls_ca
    # the system's CA store verifies the broker. cert/key for client certificates.
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive: int = 30
    protocol: str = field(default_factory=_default_protocol)
    reconnect_min_s: int = RECONNECT_MIN_S
    reconnect_max_s: int = RECONNECT_MAX_S

    def __post_init__(self) -> None:
        if self.protocol not in MQTT_PROTOCOLS:
            raise MqttConfigError(
                f"MQTT protocol {self.protocol!r} is not supported; use \"5\" or \"3.1.1\""
            )
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttConfigError(
                f"MQTT reconnect back-off {self.reconnect_min_s}–{self.reconnect_max_s} s is "
                f"invalid: need 1 <= reconnect_min_s <= reconnect_max_s "
                f"(defaults {RECONNECT_MIN_S} and {RECONNECT_MAX_S})"
            )

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None

    @property
    def shared_subscriptions(self) -> bool:
        """Whether ``$share/<group>/…`` subscriptions are available (MQTT v5 only)."""
        return self.protocol == "5"

    @classmethod
    def from_mapping(cls, table: dict[str, Any], *, where: str = "mqtt",
                     base: Path | None = None) -> MqttSettings:
        """Settings from a TOML table. ``password_file`` (instead of ``password``) names a
        file, mode 0600, whose first line is the broker password, so the config itself holds
        no secret. Relative file paths are taken from ``base`` (the config's directory)."""
        def get(key: str, typ: type, default: Any) -> Any:
            value = table.get(key, default)
            if value is not None and not isinstance(value, typ):
                raise MqttConfigError(
                    f"Expected {typ.__name__} for [{where}].{key}, got {value!r}"
                )
            return value

        def path(key: str) -> Path | None:
            value = get(key, str, None)
            if not value:
                return None
            p = Path(value)
            return base / p if base is not None and not p.is_absolute() else p

        port = get("port", int, 1883)
        if not 0 < port < 65536:
            raise MqttConfigError(f"[{where}].port {port} is not a TCP port (1–65535)")
        protocol = get("protocol", str, _default_protocol())
        if protocol not in MQTT_PROTOCOLS:
            raise MqttConfigError(
                f"[{where}].protocol {protocol!r} is not supported; use \"5\" (default, "
                f"shared subscriptions) or \"3.1.1\" (brokers without MQTT v5, e.g. amqtt)"
            )
        password = get("password", str, None)
        password_file = path("password_file")
        if password_file is not None:
            if password is not None:
                raise MqttConfigError(
                    f"[{where}] has both password and password_file; keep only "
                    f"password_file = \"{password_file}\" (the file holds the password)"
                )
            password = read_password_file(password_file, where=f"[{where}].password_file")
        cert, key = path("tls_cert"), path("tls_key")
        if (cert is None) != (key is None):
            raise MqttConfigError(
                f"[{where}] client certificates need both tls_cert and tls_key "
                f"(got only {'tls_cert' if cert else 'tls_key'})"
            )
        return cls(
            host=get("host", str, "127.0.0.1"),
            port=port,
            username=get("username", str, None),
            password=password,
            tls=get("tls", bool, False),
            tls_ca=path("tls_ca"),
            tls_cert=cert,
            tls_key=key,
            keepalive=get("keepalive", int, 30),
            protocol=protocol,
            reconnect_min_s=get("reconnect_min_s", int, RECONNECT_MIN_S),
            reconnect_max_s=get("reconnect_max_s", int, RECONNECT_MAX_S),
        )


def read_password_file(path: Path, *, where: str = "password_file") -> str:
    """The first line of a broker password file, which only its owner may read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MqttConfigError(
                f"{where}: {path} has mode {mode:04o}, readable by others; run "
                f"'chmod 600 {path}' (and change the broker password if others could read it)"
            )
        text = path.read_text("utf-8")
    except OSError as exc:
        raise MqttConfigError(
            f"{where}: cannot read {path} ({exc.strerror}); write the broker password into "
            f"it (one line, mode 0600)"
        ) from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise MqttConfigError(f"{where}: {path} is empty; write the broker password into it")
    return password


def make_client(settings: MqttSettings, client_id: str, *,
                persistent: bool = False) -> mqtt.Client:
    """A paho client (MQTT v5 or 3.1.1 per ``settings.protocol``) with credentials and TLS
    applied (not yet connected). Connect with :func:`connect_async`, which passes the
    protocol-specific session flag.

    ``persistent``: the broker keeps the session (subscriptions, queued QoS 1 messages) across
    disconnects; needs a fixed ``client_id``. Under 3.1.1 the flag lives in the constructor
    (``clean_session``); under v5 :func:`connect_async` sends it with ``session_expiry_s``.
    """
    if settings.protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=not persistent)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.uses_tls:
        client.tls_set(
            ca_certs=str(settings.tls_ca) if settings.tls_ca else None,
            certfile=str(settings.tls_cert) if settings.tls_cert else None,
            keyfile=str(settings.tls_key) if settings.tls_key else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    # QoS 1 messages beyond this many in flight wait in paho's queue (memory only).
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(min_delay=settings.reconnect_min_s,
                               max_delay=settings.reconnect_max_s)
    return client


def session_properties(expiry_s: int = GATE_SESSION_EXPIRY_S) -> Properties:
    """MQTT v5 CONNECT properties for a persistent session. (Under v5 a session expiry of 0,
    the default, ends the session at disconnect even with ``clean_start=False``.)"""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def connect_async(client: mqtt.Client, settings: MqttSettings, *,
                  session_expiry_s: int | None = None) -> None:
    """Start connecting. Without ``session_expiry_s``: a fresh session (``clean_start`` on v5,
    ``clean_session`` before). With it: resume the broker's persistent session for this client
    id and keep it ``session_expiry_s`` seconds after a disconnect (v5; under 3.1.1 the broker
    keeps it until it is cleaned, and the client must come from
    ``make_client(..., persistent=True)``).

    paho refuses ``clean_start`` on a 3.1.1 client (the session flag is set in the
    constructor there), so callers go through this one place.
    """
    if settings.protocol == "5":
        if session_expiry_s is None:
            client.connect_async(settings.host, settings.port, settings.keepalive,
                                 clean_start=True)
        else:
            client.connect_async(settings.host, settings.port, settings.keepalive,
                                 clean_start=False,
                                 properties=session_properties(session_expiry_s))
    else:
        client.connect_async(settings.host, settings.port, settings.keepalive)
