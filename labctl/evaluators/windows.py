"""Measured windows as observing evaluators see them, and the mapping between the clocks.

The runner announces each measured window with a :class:`~labctl.observations.WindowObserved`
``start`` and ``end``, each carrying both clocks: the device time ``ts`` (accelerated on a
simulated rig) and the controller wall clock ``at``. Those edge pairs are the only link
between the two clocks, so :class:`DeviceClock` maps a wall-clock arrival to
device time by linear interpolation between them (exact on a real-time rig and on a rig
accelerated at a constant speed), and outside them by a 1:1 offset from the nearest edge.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labctl.observations import WindowObserved


@dataclass(frozen=True, slots=True)
class Window:
    """One measured window: ``start_ts ≤ device time < end_ts``."""

    phase: str
    start_ts: float
    end_ts: float
    start_at: float
    end_at: float
    conditions: Mapping[str, float] = field(default_factory=dict)
    open: bool = False
    """True when no ``end`` was seen yet; the end is then the latest time observed."""

    @property
    def length(self) -> float:
        """Length in device seconds."""
        return self.end_ts - self.start_ts

    @property
    def speed(self) -> float | None:
        """Device seconds per wall second over the window (None when it took no wall time)."""
        wall = self.end_at - self.start_at
        return self.length / wall if wall > 0 else None


@dataclass
class WindowTracker:
    """Pairs window ``start``/``end`` observations into :class:`Window` records."""

    _closed: list[Window] = field(default_factory=list)
    _open: WindowObserved | None = None
    _latest_ts: float | None = None
    _latest_at: float | None = None
    notes: list[str] = field(default_factory=list)

    def observe(self, obs: WindowObserved) -> None:
        """Take a window edge, in arrival order."""
        if obs.edge == "start":
            if self._open is not None:
                self.notes.append(
                    f"window {self._open.phase!r} had no end before the next start; "
                    "it was closed there"
                )
                self._close(self._open, obs.ts, obs.at)
            self._open = obs
            return
        if self._open is None:
            self.notes.append(f"an end of window {obs.phase!r} without its start was ignored")
            return
        self._close(self._open, obs.ts, obs.at, obs.conditions)
        self._open = None

    def saw(self, ts: float | None, at: float) -> None:
        """Note the latest times seen (bounds a window that has not ended yet)."""
        if ts is not None and (self._latest_ts is None or ts > self._latest_ts):
            self._latest_ts = ts
        if self._latest_at is None or at > self._latest_at:
            self._latest_at = at

    def _close(
        self,
        start: WindowObserved,
        end_ts: float,
        end_at: float,
        end_conditions: Mapping[str, float] | None = None,
    ) -> None:
        if end_ts < start.ts:
            self.notes.append(
                f"window {start.phase!r} ends before it starts (device time); ignored"
            )
            return
        # The conditions in force are those announced at the start; an end may repeat them.
        conditions = dict(end_conditions or {})
        conditions.update(start.conditions)
        self._closed.append(
            Window(start.phase, start.ts, end_ts, start.at, max(end_at, start.at), conditions)
        )

    def windows(self) -> list[Window]:
        """Every window so far, in order; an open one ends at the latest time seen (its end
        edge then pairs the latest device time with the latest arrival, so clock mapping
        inside it is approximate by about one data latency until it closes)."""
        out = list(self._closed)
        w = self._open
        if w is not None:
            end_ts = max(w.ts, self._latest_ts if self._latest_ts is not None else w.ts)
            end_at = max(w.at, self._latest_at if self._latest_at is not None else w.at)
            if end_ts > w.ts:
                out.append(Window(w.phase, w.ts, end_ts, w.at, end_at, dict(w.conditions), True))
        return out


class DeviceClock:
    """Maps controller wall-clock times to device time through window edges (see module)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        points = sorted({p for w in windows for p in _edges(w)})
        self._ats = [p[0] for p in points]
        self._tss = [p[1] for p in points]

    def __call__(self, at: float) -> float:
        """Device time at wall-clock ``at``."""
        ats, tss = self._ats, self._tss
        if not ats:
            return at
        i = bisect.bisect_right(ats, at)
        if i == 0:
            return tss[0] + (at - ats[0])
        if i == len(ats):
            return tss[-1] + (at - ats[-1])
        a0, a1 = ats[i - 1], ats[i]
        if a1 == a0:
            return tss[i]
        return tss[i - 1] + (tss[i] - tss[i - 1]) * (at - a0) / (a1 - a0)


def _edges(w: Window) -> tuple[tuple[float, float], tuple[float, float]]:
    return (w.start_at, w.start_ts), (w.end_at, w.end_ts)
