"""Scenario files (TOML): the site, the scale, the trucks and their scripted cheats.

Validation is pydantic; its error locations are mapped back to the line of the TOML file that
holds the offending key, so an error reads ``honest.toml:14: truck[1].axles: ...``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_sim.errors import ScenarioError
from firmware_sim.physics import ScaleSpec

__all__ = [
    "Scenario",
    "ScenarioMeta",
    "ScaleConfig",
    "GateConfig",
    "Truck",
    "Cheat",
    "load_scenario",
    "parse_scenario",
]

PassKind = Literal["tare", "gross"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioMeta(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = 0
    end_after_s: float | None = Field(default=None, gt=0)


class ScaleConfig(_Strict):
    capacity_kg: int = Field(default=100_000, gt=0)
    e_kg: int = Field(default=20, gt=0)
    decimals: int = Field(default=0, ge=0, le=4)
    unit: Literal["kg", "t"] = "kg"
    platform_length_m: float = Field(default=18.0, ge=8.0, le=40.0)
    noise_e: float = Field(default=0.1, ge=0.0, le=1.0)
    zero_drift_kg_per_h: float = Field(default=20.0, ge=-1000.0, le=1000.0)
    settle_tau_s: float = Field(default=0.8, gt=0.0, le=10.0)

    def spec(self) -> ScaleSpec:
        return ScaleSpec(
            capacity_kg=self.capacity_kg,
            e_kg=self.e_kg,
            decimals=self.decimals,
            unit=self.unit,
            noise_e=self.noise_e,
            zero_drift_kg_per_h=self.zero_drift_kg_per_h,
            settle_tau_s=self.settle_tau_s,
        )


class GateConfig(_Strict):
    barrier_travel_s: float = Field(default=3.0, gt=0.0, le=30.0)


class OneAxleOff(_Strict):
    kind: Literal["one_axle_off"]
    pass_: PassKind = Field(default="gross", alias="pass")
    # The gate holds a truck half off the scale and never opens for it; after this long at the
    # closed barrier (the operator on the intercom) the driver pulls fully on.
    give_up_s: float = Field(default=60.0, ge=1.0)


class Tailgate(_Strict):
    kind: Literal["tailgate"]
    pass_: PassKind = Field(default="gross", alias="pass")
    gap_m: float = Field(default=1.0, ge=0.2, le=5.0)
    # A gate that holds both trucks never opens for the one in front; after this long standing
    # behind it (the operator on the intercom) the tailgater backs off and queues again.
    give_up_s: float = Field(default=60.0, ge=1.0)


class Jammer(_Strict):
    kind: Literal["jammer"]
    pass_: PassKind = Field(default="gross", alias="pass")
    delta_kg: int
    after_s: float = Field(default=4.0, ge=0.0)


class WaterTank(_Strict):
    kind: Literal["water_tank"]
    pass_: Literal["tare"] = Field(default="tare", alias="pass")
    water_kg: int = Field(gt=0, le=5000)


class PlateSwap(_Strict):
    kind: Literal["plate_swap"]
    pass_: PassKind = Field(default="gross", alias="pass")
    shown_plate: str = Field(min_length=2)


class NoWeighing(_Strict):
    kind: Literal["no_weighing"]
    pass_: PassKind = Field(default="gross", alias="pass")


class ForceBarrier(_Strict):
    kind: Literal["force_barrier"]
    pass_: PassKind = Field(default="gross", alias="pass")
    after_s: float = Field(default=10.0, ge=0.0)


Cheat = Annotated[
    OneAxleOff | Tailgate | Jammer | WaterTank | PlateSwap | NoWeighing | ForceBarrier,
    Field(discriminator="kind"),
]


class Truck(_Strict):
    plate: str = Field(min_length=2)
    axles: int = Field(ge=2, le=6)
    tare_kg: int = Field(gt=0)
    load_kg: int = Field(ge=0)
    ticket: str | None = None
    arrive_s: float = Field(ge=0.0)
    passes: Literal["one", "two"] = "one"
    return_after_s: float = Field(default=120.0, gt=0.0)
    dwell_s: float = Field(default=8.0, ge=0.0)
    cheat: list[Cheat] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tare_pass_cheats_need_two_passes(self) -> Truck:
        if self.passes == "one" and any(c.pass_ == "tare" for c in self.cheat):
            raise ValueError('a cheat on the tare pass needs passes = "two"')
        return self

    def cheats_for(self, pass_kind: str) -> list[Cheat]:
        return [c for c in self.cheat if c.pass_ == pass_kind]


class Scenario(_Strict):
    scenario: ScenarioMeta
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    truck: list[Truck] = Field(min_length=1)


# ---- line numbers for error locations ---------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*(\.|=)""")
_TOML_LINE = re.compile(r"at line (\d+)")

Loc = tuple[str | int, ...]


def _key_lines(text: str) -> dict[Loc, int]:
    """Map concrete locations like ("truck", 1, "axles") to 1-based line numbers."""
    lines: dict[Loc, int] = {}
    counters: dict[Loc, int] = {}
    current: Loc = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = [p.strip().strip("\"'") for p in header.group(2).split(".")]
            is_array = header.group(1) == "[["
            path: list[str | int] = []
            for i, name in enumerate(names):
                path.append(name)
                last = i == len(names) - 1
                if last and is_array:
                    parent = tuple(path)
                    index = counters.get(parent, -1) + 1
                    counters[parent] = index
                    path.append(index)
                elif not last and tuple(path) in counters:
                    path.append(counters[tuple(path)])  # the latest element of an array
            current = tuple(path)
            lines.setdefault(current, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(current + (key.group(1).strip("\"'"),), number)
    return lines


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse and validate scenario TOML text; ``path`` is only used in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        raise ScenarioError(
            path, int(match.group(1)) if match else None, "", f"not valid TOML: {exc}"
        ) from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Union members and validators add synthetic location parts; keep the real keys.
        loc: Loc = tuple(
            p for p in first["loc"] if isinstance(p, int) or p in _known_keys(data, first["loc"])
        )
        lines = _key_lines(text)
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see docs/simulator.md)"
        elif first["type"] == "missing":
            message = "required field is missing"
        raise ScenarioError(path, _line_for(loc, lines), _field_name(loc), message) from exc


def _known_keys(data: object, loc: tuple[str | int, ...]) -> set[str]:
    """Keys that can appear in a location: every field name, minus pydantic's tag names."""
    names: set[str] = set()
    for model in (
        Scenario,
        ScenarioMeta,
        ScaleConfig,
        GateConfig,
        Truck,
        OneAxleOff,
        Tailgate,
        Jammer,
        WaterTank,
        PlateSwap,
        NoWeighing,
        ForceBarrier,
    ):
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    for part in loc:
        if isinstance(part, str) and part not in names and _is_user_key(data, part):
            names.add(part)  # an unknown (extra) key the user wrote
    return names


def _is_user_key(data: object, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_is_user_key(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_is_user_key(v, key) for v in data)
    return False


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Raises ``ScenarioError`` naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            str(p), None, "", f"cannot read the scenario file: {exc.strerror}"
        ) from exc
    return parse_scenario(text, str(p))
