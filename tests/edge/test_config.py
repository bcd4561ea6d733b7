"""Site config: the example is valid; every problem is explained with its key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "site.example.toml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalgate", "edge", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def test_example_config_is_valid_and_maps_to_policy() -> None:
    cfg = load_config(EXAMPLE)
    p = cfg.gate_policy()
    assert p.axle_limits_kg == {2: 18000, 3: 25000, 4: 31000, 5: 43000, 6: 49000}
    assert p.site_id == "sxym-001" and p.stability_window_ms == 2000
    assert Path(cfg.site.ledger).is_absolute()


def write(tmp_path: Path, text: str) -> Path:
    base = EXAMPLE.read_text(encoding="utf-8")
    p = tmp_path / "site.toml"
    p.write_text(base + "\n" + text, encoding="utf-8")
    return p


def problems(tmp_path: Path, replace: tuple[str, str]) -> list[str]:
    text = EXAMPLE.read_text(encoding="utf-8").replace(*replace)
    p = tmp_path / "site.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return exc.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("baudrate = 9600\n# host", "baudrate = \"fast\"\n# host",
         "Expected integer, but cannot parse 'fast' as an integer (scale.baudrate)"),
        ('protocol = "xk3190"', 'protocol = "xk9999"',
         "Expected one of 'xk3190', 'xk3190_format2', 'toledo', 'sics', 'regex' or 'modbus', "
         "got 'xk9999' (scale.protocol)"),
        ("\ne_kg = 20", "\ne_kg = 0", "Expected a value at least 1, got 0 (scale.e_kg)"),
        ("ticket_required = false", "ticket_requird = false",
         "Unknown key 'ticket_requird'; check its spelling or remove it (policy.ticket_requird)"),
        ('device = "/dev/ttyS0"\n', "",
         "transport 'serial' needs device = \"/dev/ttyUSB0\" (or similar) (scale)"),
        ('id = "sxym-001"', 'id = "榆林 1"', "(site.id)"),
        ("tare_kg = 15000", "tare_kg = \"heavy\"",
         "Expected integer, but cannot parse 'heavy' as an integer (vehicles[0].tare_kg)"),
        ("6 = 49000", "seven = 49000", "axle_limits_kg key 'seven' must be an axle count"),
        ('host = "192.168.1.60"\nport = 502\n', "",
         "transport 'modbus_tcp' needs host and port (io)"),
    ],
)
def test_problems_name_the_key_and_the_fix(tmp_path: Path, old: str, new: str,
                                           expected: str) -> None:
    found = problems(tmp_path, (old, new))
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("\ne_kg = 20", "\ne_kg = -1").replace('language = "zh"', 'language = "fr"')
    p = tmp_path / "s.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert len(exc.value.problems) == 2


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text("[site]\nid = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(p)


def test_missing_section(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[site]\nid = "a"\nkey = "k"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert exc.value.problems == ["Required key is missing; add it (scale)"]


def test_cli_check_config_ok_and_bad(tmp_path: Path) -> None:
    ok = cli("check-config", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "sxym-001" in ok.stdout
    assert "site key file" in ok.stderr  # the example's key does not exist here: a warning
    bad = write(tmp_path, "[bogus]\nx = 1\n")
    r = cli("check-config", str(bad))
    assert r.returncode == 1
    assert "Unknown key 'bogus'; check its spelling or remove it (bogus)" in r.stderr


def test_cli_run_refuses_a_missing_key(tmp_path: Path) -> None:
    r = cli("run", "--config", str(EXAMPLE))
    assert r.returncode == 1 and "coalgate ledger keygen" in r.stderr


def test_cli_help_has_examples() -> None:
    for cmd in (("check-config",), ("run",), ("user", "add"), ("user", "passwd"),
                ("user", "disable"), ("user", "list")):
        r = cli(*cmd, "--help")
        assert "Example:" in r.stdout, cmd


@pytest.mark.parametrize("written", ["陕K·7X215", "陕K 7X215", "陕k7x215", "陕Ｋ７Ｘ２１５",
                                     "陕ｋ・７ｘ２１５"])
def test_vehicle_plates_are_normalised_as_the_reader_reports_them(tmp_path: Path,
                                                                  written: str) -> None:
    cfg = load_config(write(tmp_path, f'[[vehicles]]\nplate = "{written}"\naxles = 6\n'))
    assert cfg.vehicles[-1].plate == "陕K7X215"


def test_invalid_vehicle_plate_is_refused_naming_the_entry(tmp_path: Path) -> None:
    found = problems(tmp_path, ('plate = "陕K12345"', 'plate = "陕KI2345"'))
    assert len(found) == 1 and found[0].endswith("(vehicles[0].plate)"), found
    assert "'陕KI2345' is not a valid Chinese plate" in found[0]


def test_two_entries_for_one_plate_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, '[[vehicles]]\nplate = "陕K·12345"\naxles = 3\n'))
    assert any("vehicles[1] and vehicles[0] are both 陕K12345" in p for p in exc.value.problems)


def test_cli_check_config_refuses_a_bad_vehicle_plate(tmp_path: Path) -> None:
    p = write(tmp_path, '[[vehicles]]\nplate = "陕K·7X2I5"\naxles = 6\n')
    r = cli("check-config", str(p))
    assert r.returncode != 0 and "vehicles[1].plate" in r.stdout + r.stderr


def test_honest_six_axle_truck_written_with_a_dot_gets_its_own_limit(tmp_path: Path) -> None:
    """Issue 12: 陕K·7X215 in [[vehicles]] never matched the read 陕K7X215, so the 6-axle
    truck got the smallest limit (18 t) and was held as overloaded."""
    from edge_agent.gate import GateController
    from edge_agent.runtime import vehicle_book
    from tests.edge.gate_harness import Gate

    text = EXAMPLE.read_text(encoding="utf-8").replace("default_axles = 6", "")
    text += '\n[[vehicles]]\nplate = "陕K·7X215"\naxles = 6\n'
    p = tmp_path / "site.toml"
    p.write_text(text, encoding="utf-8")
    cfg = load_config(p)
    assert cfg.gate_policy().default_axles is None  # unknown trucks: the smallest limit
    g = Gate(GateController(cfg.gate_policy(), book=vehicle_book(cfg)))
    g.drive_on(15000, "陕K7X215", axles=None)  # the reader gives no axle count
    g.hold(15000, 3000)
    g.drive_off(15000)
    g.hold(0, 1000)
    g.drive_on(46000, "陕K7X215", axles=None)
    g.hold(46000, 3000)
    w = g.bodies("weighing")[-1]
    assert (w["axles"], w["limit_kg"], w["decision"]) == (6, 49000, "release"), w
    assert g.barrier_up
