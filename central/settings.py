"""The central service's one settings object, loaded from a TOML file and the environment.

One TOML file configures the whole central (see config/central.example.toml). The ingest side's
tables — ``[database]``, ``[mqtt]``, ``[witness]``, ``[ingest]`` — are read by
``central.ingest.settings`` and carried here as ``Settings.ingest``; this module adds the API and
rule tables and the top-level keys. Environment variables override single keys of those, so
containers and tests need no file: ``COALGATE_CENTRAL__API__PORT=9000`` sets ``[api] port`` and
``COALGATE_CENTRAL__DATABASE__URL=postgresql://…`` the database (string keys of the ingest tables).
Unknown keys in these tables are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from central.ingest.settings import ConfigError, IngestSettings
from central.ingest.settings import settings_from_mapping as ingest_from_mapping

__all__ = [
    "ENV_PREFIX",
    "ApiSettings",
    "RuleSettings",
    "Settings",
    "SettingsError",
    "TicketsSection",
    "load_settings",
]

ENV_PREFIX = "COALGATE_CENTRAL__"
# Top-level tables owned by central.ingest.settings; everything else here is validated by us.
_INGEST_TABLES = ("database", "mqtt", "witness", "ingest")


class SettingsError(Exception):
    """The configuration file or environment is unreadable or invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=8, ge=1)
    # How often the API looks for sites that have gone quiet (site_offline alarms).
    offline_sweep_s: float = Field(default=15.0, gt=0)
    # Keep-alive comment on the SSE stream so proxies do not close an idle connection.
    sse_ping_s: float = Field(default=15.0, gt=0)
    # The largest request body the API accepts (413 above it, checked before reading; a body
    # is only read at all once the bearer token is found valid). Ticket issuance, the largest
    # legitimate body, is well under 4 KiB.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)


class RuleSettings(_Section):
    # A site with no status or entry for this long is offline.
    offline_after_s: int = Field(default=300, gt=0)
    # A gate whose heartbeat says a truck has waited this long with no weighing is stalled.
    gate_stalled_after_s: int = Field(default=600, gt=0)
    # An entry stamped this far ahead of its arrival, or this far behind the previous entry,
    # means the gate's clock is wrong.
    clock_skew_s: int = Field(default=120, gt=0)
    # A tare further than this (per mille) from the median of the plate's recent tares.
    tare_band_pm: int = Field(default=100, ge=1, le=1000)
    tare_history_min: int = Field(default=3, ge=1)
    tare_history_max: int = Field(default=10, ge=1)
    # Whether a ticket is required when the site has not announced its policy in a `config`
    # entry (gates write one at every start). False, like the gate's own default policy.
    ticket_required_default: bool = False
    # The central's own re-check of a weighing against its ticket (ticket_mismatch "net"):
    # the weighed net may lie ± this percent of the ticket's planned net, or ± this many kg,
    # whichever is larger. The same defaults as the gate's policy (edge_agent/gate/policy.py).
    net_tolerance_pct: float = Field(default=5.0, ge=0, le=100)
    net_tolerance_kg: int = Field(default=500, ge=0)


class TicketsSection(_Section):
    """``[tickets]``: the central's e-ticket layer (read into central.tickets.settings).

    Each description is the fix quoted when a value is refused.
    """

    root_key_file: Path | None = Field(
        default=None,
        description="the bureau's trust-root signer key file (mode 0600), which signs the "
                    "issuer trust list, e.g. root_key_file = \"/etc/coalgate/bureau-root.key\"; "
                    "create it with `coalgate ledger keygen --name bureau-root --out FILE`",
    )
    public_url: str = Field(
        default="",
        description="the base of the driver-page links printed on tickets and slips, an "
                    "http(s) URL such as public_url = \"https://coal.example.gov.cn\", or \"\" "
                    "for the address each request came in on",
    )
    witness_verifier_file: Path | None = Field(
        default=None,
        description="a file holding the central witness's verifier (public) key, so the slip "
                    "check verifies its cosignature; leave it out where [witness] key_file is "
                    "readable (the verifier is derived from it)",
    )
    issuer_key_dir: Path | None = Field(
        default=None,
        description="the directory (mode 0700, owned by the central's user) holding the "
                    "issuer signing keys, one 0600 file per key, e.g. issuer_key_dir = "
                    "\"/var/lib/coalgate/issuer-keys\"; default var/central/issuer-keys",
    )
    issuer_key_passphrase_file: Path | None = Field(
        default=None,
        description="a file (mode 0600) whose first line is the passphrase that encrypts the "
                    "issuer key files; leave it out for plain 0600 key files",
    )
    issuer_key_passphrase_env: str | None = Field(
        default=None,
        description="the name of an environment variable holding that passphrase instead, "
                    "e.g. issuer_key_passphrase_env = \"COALGATE_ISSUER_KEY_PASSPHRASE\"",
    )
    default_validity_h: int = Field(
        default=48, ge=1,
        description="hours a ticket is valid when issued without valid_to: a whole number "
                    ">= 1, e.g. default_validity_h = 48",
    )
    max_validity_days: int = Field(
        default=31, ge=1, le=366,
        description="the longest ticket validity in days, written into the trust list (gates "
                    "refuse longer tickets): a whole number from 1 to 366, e.g. 31",
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


# Tables whose refusals also name the fix (from each field's description).
_FIXED_SECTIONS: dict[str, type[BaseModel]] = {"tickets": TicketsSection}
# [tickets] keys holding file paths: relative ones are taken from the config file's directory.
_TICKET_FILES = ("root_key_file", "witness_verifier_file", "issuer_key_dir",
                 "issuer_key_passphrase_file")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # The bureau's day boundary for "today's tonnage".
    timezone: str = "Asia/Shanghai"
    api: ApiSettings = ApiSettings()
    rules: RuleSettings = RuleSettings()
    tickets: TicketsSection = TicketsSection()
    ingest: IngestSettings = IngestSettings()


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _problem(err: Any) -> str:
    """One refused value as ``table.key: what is wrong (expected: the fix)``."""
    loc = tuple(str(p) for p in err["loc"])
    text = f"{'.'.join(loc)}: {err['msg']}"
    section = _FIXED_SECTIONS.get(loc[0]) if len(loc) == 2 else None
    if section is None:
        return text
    if err["type"] == "extra_forbidden":
        return f"{text} (known keys of [{loc[0]}]: {', '.join(section.model_fields)})"
    field = section.model_fields.get(loc[1])
    return f"{text} (expected: {field.description})" if field and field.description else text


def settings_from_mapping(
    doc: Mapping[str, Any], *, base: Path, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from a parsed TOML document; relative paths are taken from ``base``."""
    doc = _merge(dict(doc), _env_overrides(os.environ if env is None else env))
    ours = {k: v for k, v in doc.items() if k not in _INGEST_TABLES}
    tickets = ours.get("tickets")
    if isinstance(tickets, Mapping):
        ours["tickets"] = {
            key: base / value if key in _TICKET_FILES and isinstance(value, str) else value
            for key, value in tickets.items()
        }
    try:
        ingest = ingest_from_mapping(doc, base=base)
        return Settings.model_validate({**ours, "ingest": ingest})
    except ConfigError as exc:
        raise SettingsError(str(exc)) from exc
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise SettingsError(f"invalid central settings: {problems}") from exc


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the TOML file at ``path`` (or defaults), overridden by ``COALGATE_CENTRAL__*``.

    Raises SettingsError naming the file and the bad key, e.g.
    ``config/central.toml: api.port: Input should be a valid integer``.
    """
    if path is None:
        return settings_from_mapping({}, base=Path.cwd(), env=env)
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(
            f"{path}: no such config file; copy config/central.example.toml and edit it"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return settings_from_mapping(doc, base=path.resolve().parent, env=env)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from exc
