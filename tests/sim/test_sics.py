"""MT-SICS answers from the pure command handler."""

from __future__ import annotations

import re

from firmware_sim.physics import ScaleModel, ScaleSpec
from firmware_sim.protocols.sics import respond, weight_line

LINE = re.compile(r"^S (?P<status>[SD]) (?P<field>.{10}) (?P<unit>kg|t)$")


def settled(load_kg: int) -> ScaleModel:
    scale = ScaleModel(ScaleSpec(noise_e=0.0), seed=0)
    scale.set_load(0.0, load_kg)
    for i in range(1, 401):
        scale.sample(i * 0.05)
    return scale


def test_s_and_si_report_a_stable_weight_in_a_ten_wide_field() -> None:
    scale = settled(34_560)
    for cmd in ("S", "SI"):
        answer = respond(cmd, scale)
        assert answer.line == "S S      34560 kg"
        m = LINE.match(answer.line)
        assert m and int(m["field"]) == 34_560


def test_s_waits_for_stability_and_times_out_with_s_i() -> None:
    scale = settled(10_000)
    scale.set_load(20.0, 30_000)
    scale.sample(20.05)
    assert respond("S", scale).wait_for_stable
    assert respond("S", scale, timed_out=True).line == "S I"
    dynamic = respond("SI", scale).line
    assert dynamic is not None and dynamic.startswith("S D ")


def test_sir_repeats() -> None:
    answer = respond("SIR", settled(5_000))
    assert answer.repeat_immediate and answer.line == "S S       5000 kg"


def test_zero_tare_and_clear() -> None:
    scale = settled(200)
    assert respond("Z", scale).line == "Z A"
    scale2 = settled(30_000)
    assert respond("Z", scale2).line == "Z +"
    assert respond("T", scale2).line == "T S      30000 kg"
    scale2.sample(20.05)
    assert respond("SI", scale2).line == "S S          0 kg"
    assert respond("TAC", scale2).line == "TAC A"
    scale2.set_load(21.0, 10_000)
    scale2.sample(21.05)
    assert respond("T", scale2).line == "T I"
    assert respond("Z", scale2).line == "Z I"


def test_overload_unknown_and_identify() -> None:
    scale = settled(120_000)
    assert respond("S", scale).line == "S +"
    assert respond("SI", scale).line == "S +"
    assert respond("HELLO", scale).line == "ES"
    assert respond("@", scale).line == 'I4 A "SIM00001"'


def test_decimal_display_in_tonnes() -> None:
    spec = ScaleSpec(unit="t", decimals=2)
    assert weight_line("S", "S", 20_000, spec) == "S S      20.00 t"
