"""The load cell and indicator: pure, driven by a simulated clock and a seeded RNG.

The platform reports the true load in kilograms (a step function: axles step on and off). The
indicator shows that load through a damped oscillation after every step, plus Gaussian noise, a
slow zero drift, automatic zero tracking, rounding to the division e, and a capacity limit.
Nothing here sleeps or reads a real clock: callers pass the simulated time ``t`` in seconds.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ScaleSpec",
    "Reading",
    "ScaleModel",
    "CommandResult",
    "class_iii_mpe_kg",
]

# Steps older than this many time constants have decayed below 1e-9 of their size: fold them.
_FORGET_AFTER_TAU = 21.0
# OIML R76 in-service limits for class III, in divisions: (upper bound in e, mpe in e).
_CLASS_III_MPE = ((500, 1), (2000, 2))
_CLASS_III_MPE_ABOVE = 3


def class_iii_mpe_kg(load_kg: float, e_kg: int) -> int:
    """OIML R76 class III maximum permissible error in service: ±1e ≤ 500e, ±2e ≤ 2000e, ±3e."""
    divisions = abs(load_kg) / e_kg
    for upper, mpe in _CLASS_III_MPE:
        if divisions <= upper:
            return mpe * e_kg
    return _CLASS_III_MPE_ABOVE * e_kg


@dataclass(frozen=True)
class ScaleSpec:
    """Static properties of the scale. Weights in kg; ``decimals``/``unit`` are for display."""

    capacity_kg: int = 100_000
    e_kg: int = 20
    decimals: int = 0
    unit: str = "kg"
    noise_e: float = 0.1
    zero_drift_kg_per_h: float = 20.0
    settle_tau_s: float = 0.8
    oscillation_hz: float = 1.6
    stable_window_s: float = 1.0
    zero_range_fraction: float = 0.02

    def to_display(self, kg: int) -> int:
        """Kilograms to the integer the indicator sends (digits without the decimal point)."""
        factor = 1000 if self.unit == "t" else 1
        return round(kg * 10**self.decimals / factor)


@dataclass(frozen=True)
class Reading:
    """What the indicator shows at time ``t`` (kg, multiples of e)."""

    t: float
    gross_kg: int
    tare_kg: int
    stable: bool
    overload: bool
    underload: bool
    centre_of_zero: bool

    @property
    def net_kg(self) -> int:
        return self.gross_kg - self.tare_kg

    @property
    def net_mode(self) -> bool:
        return self.tare_kg != 0

    @property
    def shown_kg(self) -> int:
        """Net when a tare is set, else gross: what continuous protocols send."""
        return self.net_kg if self.net_mode else self.gross_kg


class CommandResult(Enum):
    """Outcome of a zero or tare request, as an indicator would judge it."""

    DONE = "done"
    MOTION = "motion"
    ABOVE_RANGE = "above_range"
    BELOW_RANGE = "below_range"


@dataclass(frozen=True)
class _Step:
    t: float
    delta_kg: float


class ScaleModel:
    """A truck scale and its indicator: feed the true load with ``set_load``, read ``sample``."""

    def __init__(self, spec: ScaleSpec, *, seed: int = 0, t0: float = 0.0) -> None:
        self.spec = spec
        self._rng = random.Random(seed)
        self._t0 = t0
        self._base_kg = 0.0  # true load already settled (steps folded in)
        self._load_kg = 0.0  # current true load
        self._steps: list[_Step] = []
        self._offset_kg = 0.0  # a jammer or tampered indicator: indicated, not physical
        self._zero_kg = 0.0  # zero set by power-up, the Z command or zero tracking
        self._tare_kg = 0
        self._history: deque[tuple[float, int]] = deque()
        self._last: Reading | None = None

    # ---- inputs -------------------------------------------------------------------------
    def set_load(self, t: float, load_kg: float) -> None:
        """The true load on the platform changed (or not) at time ``t``."""
        delta = load_kg - self._load_kg
        if delta != 0:
            self._steps.append(_Step(t, delta))
            self._load_kg = load_kg

    def set_offset(self, offset_kg: float) -> None:
        """Indicated-only offset, as a remote-control jammer produces: a jump with no bounce."""
        self._offset_kg = offset_kg

    @property
    def true_load_kg(self) -> float:
        return self._load_kg

    # ---- the analogue side ---------------------------------------------------------------
    def _settled_part(self, t: float) -> float:
        tau = self.spec.settle_tau_s
        omega = 2 * math.pi * self.spec.oscillation_hz
        keep: list[_Step] = []
        total = self._base_kg
        for step in self._steps:
            age = t - step.t
            if age > _FORGET_AFTER_TAU * tau:
                self._base_kg += step.delta_kg
                total += step.delta_kg
                continue
            keep.append(step)
            if age <= 0:
                continue
            # Underdamped step response: starts at the old value, overshoots, rings down.
            total += step.delta_kg * (1 - math.exp(-age / tau) * math.cos(omega * age))
        self._steps = keep
        return total

    def _drift_kg(self, t: float) -> float:
        return self.spec.zero_drift_kg_per_h * (t - self._t0) / 3600.0

    def _noise_kg(self) -> float:
        sigma = self.spec.noise_e * self.spec.e_kg
        if sigma <= 0:
            return 0.0
        # Clipped at 3 sigma: a real filter never lets a single sample run away.
        return max(-3 * sigma, min(3 * sigma, self._rng.gauss(0.0, sigma)))

    # ---- the indicator --------------------------------------------------------------------
    def sample(self, t: float) -> Reading:
        """Take one A/D sample at time ``t`` (non-decreasing) and return the display."""
        spec = self.spec
        e = spec.e_kg
        raw = self._settled_part(t) + self._drift_kg(t) + self._noise_kg() + self._offset_kg
        value = raw - self._zero_kg
        gross = int(round(value / e)) * e
        self._history.append((t, gross))
        while self._history and self._history[0][0] < t - spec.stable_window_s:
            self._history.popleft()
        shown = [g for _, g in self._history]
        stable = len(shown) >= 2 and max(shown) - min(shown) <= e
        centre = abs(value) <= e / 4
        # Automatic zero tracking: a stable, empty scale follows slow drift (within ±0.5e).
        if stable and self._tare_kg == 0 and abs(value) < e / 2 and gross == 0:
            self._zero_kg += value
            centre = True
        reading = Reading(
            t=t,
            gross_kg=gross,
            tare_kg=self._tare_kg,
            stable=stable,
            overload=gross > spec.capacity_kg + 9 * e,
            underload=gross < -20 * e,
            centre_of_zero=centre,
        )
        self._last = reading
        return reading

    @property
    def last(self) -> Reading:
        if self._last is None:
            raise RuntimeError("sample() the scale before reading it")
        return self._last

    def zero(self) -> CommandResult:
        """The Z key: set zero to the current gross if stable and within the zero range."""
        reading = self.last
        if not reading.stable:
            return CommandResult.MOTION
        limit = self.spec.zero_range_fraction * self.spec.capacity_kg
        if reading.gross_kg > limit:
            return CommandResult.ABOVE_RANGE
        if reading.gross_kg < -limit:
            return CommandResult.BELOW_RANGE
        self._zero_kg += reading.gross_kg
        self._history.clear()
        return CommandResult.DONE

    def tare(self) -> tuple[CommandResult, int]:
        """The T key: take the current stable gross as tare. Returns the tare in kg."""
        reading = self.last
        if not reading.stable:
            return CommandResult.MOTION, self._tare_kg
        if reading.gross_kg <= 0:
            return CommandResult.BELOW_RANGE, self._tare_kg
        if reading.overload or reading.gross_kg > self.spec.capacity_kg:
            return CommandResult.ABOVE_RANGE, self._tare_kg
        self._tare_kg = reading.gross_kg
        return CommandResult.DONE, self._tare_kg

    def clear_tare(self) -> None:
        self._tare_kg = 0
