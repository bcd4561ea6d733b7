"""Software stability detection (the XK3190 continuous output has no motion bit).

A weight is stable when every sample in the last ``window_ms`` lies within ±``band_e``·e of
their median and the samples span the whole window. The indicator's own motion flag, when the
protocol has one, can only make a weight *less* stable.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class StabilityPolicy:
    e_kg: int = 20
    window_ms: int = 2000
    band_e: int = 1
    zero_band_kg: int = 100  # |weight| at or below this counts as an empty platform


@dataclass(frozen=True)
class Stable:
    weight_kg: int  # median of the window, rounded to a whole division
    since_ms: int  # time the window that proved stability started


class StabilityDetector:
    def __init__(self, policy: StabilityPolicy) -> None:
        self.policy = policy
        self._samples: deque[tuple[int, int, bool]] = deque()

    def reset(self) -> None:
        self._samples.clear()

    def add(self, t_ms: int, weight_kg: int, motion: bool = False) -> Stable | None:
        """Add one sample; return the stable weight if the window is now stable."""
        self._samples.append((t_ms, weight_kg, motion))
        horizon = t_ms - self.policy.window_ms
        # Keep one sample at or before the horizon so we know the window is fully covered.
        while len(self._samples) >= 2 and self._samples[1][0] <= horizon:
            self._samples.popleft()
        return self.current()

    def current(self) -> Stable | None:
        if not self._samples:
            return None
        first_t = self._samples[0][0]
        last_t = self._samples[-1][0]
        if last_t - first_t < self.policy.window_ms:
            return None
        if any(m for _, _, m in self._samples):
            return None
        ws = sorted(w for _, w, _ in self._samples)
        median = ws[len(ws) // 2]
        band = self.policy.band_e * self.policy.e_kg
        if ws[0] < median - band or ws[-1] > median + band:
            return None
        e = self.policy.e_kg
        return Stable(weight_kg=int(round(median / e)) * e, since_ms=first_t)

    def at_zero(self, weight_kg: int) -> bool:
        return abs(weight_kg) <= self.policy.zero_band_kg
