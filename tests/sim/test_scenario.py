"""Scenario files: the shipped ones load; bad ones name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.errors import ScenarioError
from firmware_sim.scenario import Jammer, WaterTank, load_scenario

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "config" / "scenarios").glob("*.toml"))

GOOD = """\
[scenario]
name = "t"

[[truck]]
plate = "陕K1"
axles = 3
tare_kg = 10000
load_kg = 15000
arrive_s = 0

[[truck]]
plate = "陕K2"
axles = 4
tare_kg = 12000
load_kg = 1
arrive_s = 5
passes = "two"
[[truck.cheat]]
kind = "jammer"
delta_kg = -2000
[[truck.cheat]]
kind = "water_tank"
water_kg = 500
"""


def test_every_shipped_scenario_loads() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"honest-two-pass", "honest-one-pass", "cheats-mixed", "overload"} <= names
    for path in SHIPPED:
        scenario = load_scenario(path)
        assert scenario.scenario.name == path.stem
        assert scenario.truck


def test_good_scenario_fields_and_cheats(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD, encoding="utf-8")
    scenario = load_scenario(path)
    second = scenario.truck[1]
    assert second.passes == "two"
    assert isinstance(second.cheats_for("gross")[0], Jammer)
    assert isinstance(second.cheats_for("tare")[0], WaterTank)
    assert scenario.scale.capacity_kg == 100_000 and scenario.scale.e_kg == 20


@pytest.mark.parametrize(
    "old,new,line,field,words",
    [
        ("axles = 4", "axles = 9", 13, "truck[1].axles", "less than or equal to 6"),
        ("delta_kg = -2000", 'delta_kg = "lots"', 20, "truck[1].cheat[0].delta_kg", "integer"),
        ("water_kg = 500", "water_kg = 500\nwatr = 1", 24, "truck[1].cheat[1].watr", "unknown"),
        ('plate = "陕K1"\n', "", 4, "truck[0].plate", "missing"),
        ('name = "t"', "name = t", 2, "", "not valid TOML"),
        ('kind = "jammer"', 'kind = "laser"', 18, "truck[1].cheat[0]", "jammer"),
        ('passes = "two"', 'passes = "three"', 17, "truck[1].passes", "'one' or 'two'"),
        ('passes = "two"\n', "", 11, "truck[1]", "tare pass needs passes"),
    ],
)
def test_bad_scenarios_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, words: str
) -> None:
    assert old in GOOD
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    err = caught.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert err.field == field
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line}: ")


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "nope.toml")
