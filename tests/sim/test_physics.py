"""The scale model: settling within OIML R76 class III, stability, zero, tare, capacity."""

from __future__ import annotations

import pytest

from firmware_sim.physics import CommandResult, ScaleModel, ScaleSpec, class_iii_mpe_kg

SAMPLE_S = 0.05


def run(scale: ScaleModel, start: float, seconds: float) -> list:
    out = []
    steps = round(seconds / SAMPLE_S)
    for i in range(1, steps + 1):
        out.append(scale.sample(start + i * SAMPLE_S))
    return out


def test_class_iii_mpe_bands() -> None:
    e = 20
    assert class_iii_mpe_kg(0, e) == 20
    assert class_iii_mpe_kg(500 * e, e) == 20
    assert class_iii_mpe_kg(500 * e + 1, e) == 40
    assert class_iii_mpe_kg(2000 * e, e) == 40
    assert class_iii_mpe_kg(2000 * e + 1, e) == 60


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("true_kg", [3_010, 9_990, 15_200, 40_010, 49_000, 99_990])
def test_settles_within_class_iii_of_the_scripted_weight(seed: int, true_kg: int) -> None:
    spec = ScaleSpec()
    scale = ScaleModel(spec, seed=seed)
    run(scale, 0.0, 5.0)
    # The truck drives on in steps (front axle, then the rest), then stands.
    scale.set_load(5.0, true_kg * 0.3)
    run(scale, 5.0, 2.0)
    scale.set_load(7.0, true_kg)
    readings = run(scale, 7.0, 30.0)
    first_stable = next(i for i, r in enumerate(readings) if r.stable)
    settled = readings[first_stable:]
    mpe = class_iii_mpe_kg(true_kg, spec.e_kg)
    for reading in settled:
        assert abs(reading.gross_kg - true_kg) <= mpe, (reading, true_kg, mpe)
        assert reading.gross_kg % spec.e_kg == 0


def test_a_step_rings_before_it_settles() -> None:
    scale = ScaleModel(ScaleSpec(noise_e=0.0), seed=1)
    run(scale, 0.0, 3.0)
    scale.set_load(3.0, 30_000)
    readings = run(scale, 3.0, 8.0)
    early = readings[: round(1.0 / SAMPLE_S)]
    assert max(r.gross_kg for r in early) > 30_000 + 1000, "overshoot after the step"
    assert not any(r.stable for r in early), "motion right after the step"
    assert readings[-1].stable and readings[-1].gross_kg == 30_000


def test_same_seed_same_readings_other_seed_different() -> None:
    def trace(seed: int) -> list[int]:
        scale = ScaleModel(ScaleSpec(noise_e=0.5), seed=seed)
        scale.set_load(0.0, 20_000)
        return [r.gross_kg for r in run(scale, 0.0, 20.0)]

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_zero_tracking_holds_an_empty_scale_at_zero_despite_drift() -> None:
    scale = ScaleModel(ScaleSpec(zero_drift_kg_per_h=200.0), seed=0)
    readings = run(scale, 0.0, 600.0)  # drift alone would be 33 kg > 1e
    assert all(r.gross_kg == 0 for r in readings[-100:])
    assert readings[-1].centre_of_zero


def test_without_zero_tracking_a_loaded_scale_shows_the_drift() -> None:
    scale = ScaleModel(ScaleSpec(zero_drift_kg_per_h=3600.0, noise_e=0.0), seed=0)
    scale.set_load(0.0, 20_000)
    readings = run(scale, 0.0, 60.0)  # 60 kg of drift with a load on
    assert readings[-1].gross_kg == 20_060


def test_overload_above_capacity_plus_nine_e() -> None:
    spec = ScaleSpec()
    scale = ScaleModel(spec, seed=0)
    scale.set_load(0.0, spec.capacity_kg + 10 * spec.e_kg)
    assert run(scale, 0.0, 20.0)[-1].overload
    scale.set_load(20.0, spec.capacity_kg)
    assert not run(scale, 20.0, 20.0)[-1].overload


def test_zero_and_tare_commands_follow_indicator_rules() -> None:
    spec = ScaleSpec(noise_e=0.0)
    scale = ScaleModel(spec, seed=0)
    scale.set_load(0.0, 1_000)  # within 2 % of capacity: zero allowed
    scale.sample(0.1)
    assert scale.zero() is CommandResult.MOTION
    run(scale, 0.1, 20.0)
    assert scale.zero() is CommandResult.DONE
    assert run(scale, 20.1, 2.0)[-1].gross_kg == 0
    scale.set_load(30.0, 31_000)
    readings = run(scale, 30.0, 20.0)
    assert readings[-1].gross_kg == 30_000
    assert scale.zero() is CommandResult.ABOVE_RANGE
    result, tare = scale.tare()
    assert result is CommandResult.DONE and tare == 30_000
    reading = run(scale, 50.0, 1.0)[-1]
    assert reading.net_mode and reading.net_kg == 0 and reading.shown_kg == 0
    scale.clear_tare()
    assert run(scale, 51.0, 1.0)[-1].shown_kg == 30_000


def test_jammer_offset_jumps_without_a_physical_step() -> None:
    scale = ScaleModel(ScaleSpec(noise_e=0.0), seed=0)
    scale.set_load(0.0, 40_000)
    run(scale, 0.0, 20.0)
    scale.set_offset(-3_000)
    after = run(scale, 20.0, 1.0)
    assert after[0].gross_kg == 37_000 and scale.true_load_kg == 40_000
