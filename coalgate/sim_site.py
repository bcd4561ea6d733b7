"""The gate agent's site config (the form of config/site.example.toml) for a site whose devices
are the simulator's (``coalgate sim run`` and its endpoints JSON, docs/simulator.md).

Written by ``coalgate demo`` for each of its sites and by the integration tests, so both run
the gate against the simulator with the same config. Pure: data in, TOML text out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "SCALE_ENDPOINTS",
    "MqttLink",
    "RegisteredVehicle",
    "scale_table",
    "site_config_toml",
    "timings_for_speed",
]

# The simulator's scale endpoints a gate can be wired to: <indicator>_<transport>.
SCALE_ENDPOINTS = ("xk3190_pty", "xk3190_tcp", "format2_tcp", "toledo_tcp", "sics_pty",
                   "sics_tcp", "modbus_tcp", "modbus_rtu")

# Serial indicators reached over the serial-to-TCP box: endpoint -> (protocol, endpoints key).
_TCP_INDICATORS = {"xk3190_tcp": ("xk3190", "xk3190"),
                   "format2_tcp": ("xk3190_format2", "xk3190_format2"),
                   "toledo_tcp": ("toledo", "toledo"), "sics_tcp": ("sics", "sics")}


class RegisteredVehicle(NamedTuple):
    """A ``[[vehicles]]`` entry (车辆备案): the axles and registered tare of a plate."""

    plate: str
    axles: int
    tare_kg: int


@dataclass(frozen=True)
class MqttLink:
    """The ``[mqtt]`` table; the broker login (when any) is the site id."""

    host: str
    port: int
    protocol: str = "5"  # "3.1.1" for the demo's in-process broker (amqtt)
    password_file: str | None = None


def _v(value: Any) -> str:
    """A TOML value for a string, number, boolean or list of strings (JSON spells them alike)."""
    return json.dumps(value, ensure_ascii=False)


def timings_for_speed(speed: float) -> dict[str, Any]:
    """The gate's timers for a simulator running ``speed`` times real time.

    The gate runs on the wall clock, so its timers shrink with the simulated clock; the
    tolerances stay the product defaults. Keys and units are those of the ``[policy]`` table.
    """
    s = speed
    return {
        "stability_window_ms": max(300, int(2000 / s)),
        "confirm_s": round(2.0 / s, 3),
        "unstable_timeout_s": round(30 / s, 3),
        "beam_grace_s": round(4 / s, 3),
        "identify_timeout_s": round(8 / s, 3),
        "release_timeout_s": round(120 / s, 3),
        "device_timeout_s": 2.0,
    }


def scale_table(endpoint: str, endpoints: Mapping[str, Any]) -> str:
    """The keys of the ``[scale]`` table (and ``[scale.modbus]`` after them, when Modbus) for
    one of the simulator's scale endpoints (:data:`SCALE_ENDPOINTS`)."""
    serial = endpoints["serial"]
    if endpoint in ("xk3190_pty", "sics_pty"):
        protocol = endpoint.split("_")[0]
        return (f"protocol = {_v(protocol)}\ntransport = \"serial\"\n"
                f"device = {_v(serial[protocol]['device'])}")
    if endpoint in _TCP_INDICATORS:
        protocol, key = _TCP_INDICATORS[endpoint]
        tcp = serial[key]["tcp"]
        text = (f"protocol = {_v(protocol)}\ntransport = \"tcp\"\nhost = {_v(tcp['host'])}\n"
                f"port = {tcp['port']}")
        if protocol == "toledo":
            text += f"\ntoledo_checksum = {_v(bool(serial['toledo'].get('checksum', True)))}"
        return text
    if endpoint == "modbus_tcp":
        m = endpoints["modbus"]["scale_tcp"]
        return (f"protocol = \"modbus\"\ntransport = \"modbus_tcp\"\nhost = {_v(m['host'])}\n"
                f"port = {m['port']}\n\n[scale.modbus]\nunit_id = {m['unit_id']}")
    if endpoint == "modbus_rtu":
        m = endpoints["modbus"]["scale_rtu"]
        return (f"protocol = \"modbus\"\ntransport = \"modbus_rtu\"\ndevice = {_v(m['device'])}\n"
                f"\n[scale.modbus]\nunit_id = {m['unit_id']}")
    raise ValueError(f"unknown scale endpoint {endpoint!r}; expected one of {SCALE_ENDPOINTS}")


def site_config_toml(
    *,
    site_id: str,
    name: str,
    endpoints: Mapping[str, Any],
    scale_endpoint: str,
    policy: Mapping[str, Any],
    vehicles: Iterable[RegisteredVehicle],
    console_port: int,
    snapshot_url: str | None = None,
    trust_roots: Sequence[str] = (),
    mqtt: MqttLink | None = None,
    comment: str = "",
    scanner_push: bool = False,
) -> str:
    """The site config of a gate on the simulator's devices: the scale on ``scale_endpoint``,
    the gate IO on the Modbus TCP board, plates pushed to /device/anpr with the secret in
    ``anpr.secret`` and console accounts in ``accounts.sqlite`` (see
    :mod:`edge_agent.console.client` to make both).

    ``policy``: the ``[policy]`` keys (see :func:`timings_for_speed`). ``snapshot_url``: the
    camera's JPEG snapshot, for the console (and the gate's own reader, when enabled).
    ``trust_roots``: the bureau's trust-root verifier keys (text). Without ``mqtt`` the gate
    runs alone. Paths are relative to the config file's directory. ``comment``: text for the
    comment lines at the top of the file. ``scanner_push``: a network QR scanner pushes to
    /device/scan with the secret in ``scanner.secret``.
    """
    io = endpoints["modbus"]["gate_io_tcp"]
    policy_keys = "\n".join(f"{k} = {_v(v)}" for k, v in policy.items())
    vehicle_tables = "\n".join(
        f"[[vehicles]]\nplate = {_v(v.plate)}\naxles = {v.axles}\ntare_kg = {v.tare_kg}\n"
        for v in vehicles
    )
    snapshot = f"snapshot_url = {_v(snapshot_url)}\n" if snapshot_url else ""
    scanner = '\n[scanner]\npush_secret_file = "scanner.secret"\n' if scanner_push else ""
    mqtt_table = ""
    if mqtt is not None:
        mqtt_table = (f"\n[mqtt]\nhost = {_v(mqtt.host)}\nport = {mqtt.port}\n"
                      f"protocol = {_v(mqtt.protocol)}\n")
        if mqtt.password_file:  # the broker login is the site id (config/mosquitto/acl: %u)
            mqtt_table += f"username = {_v(site_id)}\npassword_file = {_v(mqtt.password_file)}\n"
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"""{header}[site]
id = {_v(site_id)}
name = {_v(name)}
key = "site.key"
ledger = "ledger.sqlite"
checkpoint_every_s = 30

[scale]
{scale_table(scale_endpoint, endpoints)}

[io]
kind = "modbus_tcp"
host = {_v(io["host"])}
port = {io["port"]}
unit_id = {io["unit_id"]}
poll_ms = 50

[camera]
anpr_push = true
push_secret_file = "anpr.secret"
{snapshot}{scanner}
[tickets]
store = "tickets.sqlite"
trust_roots = {_v(list(trust_roots))}

[policy]
{policy_keys}

{vehicle_tables}
[console]
host = "127.0.0.1"
port = {console_port}
accounts = "accounts.sqlite"
{mqtt_table}"""
