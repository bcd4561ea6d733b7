"""Reconnect back-off: doubling delays with a ceiling, reset after a good connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    initial_s: float = 0.2
    maximum_s: float = 10.0
    factor: float = 2.0
    _next: float = 0.0

    def next_delay(self) -> float:
        delay = self._next or self.initial_s
        self._next = min(self.maximum_s, delay * self.factor)
        return delay

    @property
    def pending_s(self) -> float:
        """The delay the next failure will wait, without taking it."""
        return self._next or self.initial_s

    def reset(self) -> None:
        self._next = 0.0
