"""Time stamps for devices without a clock.

Real rigs stamp a reading with the controller's wall clock when its frame completes. A
simulated rig runs device time accelerated (shared with the simulator through its ports file);
there a millisecond of scheduling jitter is minutes of device time, so readings are snapped to
the device's sample grid and kept strictly increasing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Device time."""

    def now(self) -> float:
        """Epoch seconds of device time."""
        ...

    def real_seconds(self, device_seconds: float) -> float:
        """Wall seconds that ``device_seconds`` take."""
        ...


class WallClock:
    """Real time."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    def real_seconds(self, device_seconds: float) -> float:
        """Unchanged."""
        return device_seconds


@dataclass(frozen=True, slots=True)
class AcceleratedClock:
    """``start + (wall − wall_t0) × speed``: the simulated rig's device clock."""

    start: float
    speed: float
    wall_t0: float

    def now(self) -> float:
        """Device time now."""
        return self.start + (time.time() - self.wall_t0) * self.speed

    def real_seconds(self, device_seconds: float) -> float:
        """Wall seconds of ``device_seconds``."""
        return device_seconds / self.speed


class Stamper:
    """Time stamps of one device's readings (see the module docstring)."""

    def __init__(self, clock: Clock, period_s: float, grid_origin: float | None = None) -> None:
        self.clock = clock
        self.period = period_s
        self.origin = grid_origin
        self._last: float | None = None

    def stamp(self) -> float:
        """The time stamp of a reading completed now."""
        now = self.clock.now()
        if self.origin is None:
            t = now
        else:
            t = self.origin + round((now - self.origin) / self.period) * self.period
            if self._last is not None:
                t = max(t, self._last + self.period)
        self._last = t
        return t
