"""Ingest settings from the central TOML config (see config/central.example.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.db import DatabaseSettings
from edge_agent.sync.mqtt import MqttSettings

__all__ = ["IngestSettings", "ConfigError", "load_settings", "settings_from_mapping"]


class ConfigError(ValueError):
    """The central config file is missing, not TOML, or has a bad value."""


@dataclass(frozen=True)
class IngestSettings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    witness_key_file: Path = Path("var/central/witness.key")
    witness_name: str = "coalgate-central"
    share_group: str = "ingest"
    client_id: str | None = None  # default: ingest-<host>-<pid>
    # Retention of rejected messages (rejected_messages): older than this many days, or beyond
    # the newest this many rows, they are deleted; checked every rejected_prune_s seconds.
    rejected_keep_days: int = 30
    rejected_keep_max: int = 100_000
    rejected_prune_s: float = 3600.0


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def settings_from_mapping(doc: dict[str, Any], *, base: Path) -> IngestSettings:
    witness = _table(doc, "witness")
    ingest = _table(doc, "ingest")
    key_file = witness.get("key_file", "var/central/witness.key")
    name = witness.get("name", "coalgate-central")
    group = ingest.get("share_group", "ingest")
    client_id = ingest.get("client_id")
    for key, value in (
        ("witness.key_file", key_file),
        ("witness.name", name),
        ("ingest.share_group", group),
    ):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"Expected a non-empty string for [{key}], got {value!r}")
    if client_id is not None and not isinstance(client_id, str):
        raise ConfigError(f"Expected a string for [ingest].client_id, got {client_id!r}")
    retention: dict[str, Any] = {}
    for key, low in (("rejected_keep_days", 1), ("rejected_keep_max", 1),
                     ("rejected_prune_s", 1)):
        if key not in ingest:
            continue
        value = ingest[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise ConfigError(f"[ingest].{key} must be a number >= {low}, got {value!r}")
        retention[key] = float(value) if key == "rejected_prune_s" else int(value)
    if "/" in group or "+" in group or "#" in group:
        raise ConfigError(f"[ingest].share_group {group!r} may not contain '/', '+' or '#'")
    key_path = Path(key_file)
    try:
        db = DatabaseSettings.from_mapping(_table(doc, "database"), base=base)
        mqtt = MqttSettings.from_mapping(_table(doc, "mqtt"), base=base)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    except Exception as exc:  # DatabaseError is not a ValueError
        raise ConfigError(str(exc)) from exc
    return IngestSettings(
        database=db,
        mqtt=mqtt,
        witness_key_file=key_path if key_path.is_absolute() else base / key_path,
        witness_name=name,
        share_group=group,
        client_id=client_id,
        **retention,
    )


def load_settings(path: Path) -> IngestSettings:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; copy config/central.example.toml and edit it"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return settings_from_mapping(doc, base=path.resolve().parent)
