from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.stability import StabilityDetector, StabilityPolicy, Stable

P = StabilityPolicy(e_kg=20, window_ms=2000, band_e=1)


def feed(d: StabilityDetector, samples: list[tuple[int, int]]) -> list[Stable | None]:
    return [d.add(t, w) for t, w in samples]


def test_stable_only_after_full_window() -> None:
    d = StabilityDetector(P)
    out = feed(d, [(t, 31420) for t in range(0, 2100, 100)])
    assert out[19] is None  # 1.9 s covered
    s = out[20]
    assert s is not None and s.weight_kg == 31420 and s.since_ms == 0


def test_one_division_jitter_is_stable_two_is_not() -> None:
    d = StabilityDetector(P)
    ws = [31400, 31420, 31440] * 10
    assert feed(d, list(zip(range(0, 3000, 100), ws, strict=True)))[-1] is not None
    d = StabilityDetector(P)
    ws = [31400, 31420, 31460] * 10
    assert all(x is None for x in feed(d, list(zip(range(0, 3000, 100), ws, strict=True))))


def test_motion_flag_blocks_stability_for_a_window() -> None:
    d = StabilityDetector(P)
    out = [(t, d.add(t, 1000, motion=t == 2500)) for t in range(0, 6000, 100)]
    stable_at = [t for t, s in out if s is not None]
    assert 2000 in stable_at and 2400 in stable_at
    assert not [t for t in stable_at if 2500 <= t < 4600]
    assert 4600 in stable_at


def test_settling_truck_becomes_stable_after_oscillation() -> None:
    d = StabilityDetector(P)
    t, results = 0, []
    for amp in [3000, 1500, 700, 300, 100, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]:
        for sign in (1, -1):
            results.append(d.add(t, 40000 + sign * amp))
            t += 100
    firsts = [i for i, r in enumerate(results) if r is not None]
    assert firsts and firsts[0] >= 12 + 20  # not before the swing dies plus a full window


@given(st.lists(st.integers(-100000, 100000), min_size=1, max_size=60))
def test_stable_weight_is_within_band_of_every_sample(ws: list[int]) -> None:
    d = StabilityDetector(P)
    for i, w in enumerate(ws):
        s = d.add(i * 100, w)
        if s is not None:
            window = [x for j, x in enumerate(ws[: i + 1]) if j * 100 >= i * 100 - 2100]
            assert all(abs(x - s.weight_kg) <= 2 * P.e_kg + P.e_kg for x in window)


def test_zero_band() -> None:
    d = StabilityDetector(P)
    assert d.at_zero(80) and d.at_zero(-100) and not d.at_zero(120)
