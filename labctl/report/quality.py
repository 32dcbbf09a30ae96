"""Data quality of a run from its spooled samples: completeness, sequence gaps, outages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labctl.metrics.replay import Sample

OUTAGE_INTERVALS = 5
"""A gap longer than this many nominal intervals (and at least :data:`OUTAGE_MIN_S`) is an
outage."""
OUTAGE_MIN_S = 300.0


@dataclass
class _Device:
    ts: list[float] = field(default_factory=list)
    sessions: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """session → (first seq, last seq, count)."""


@dataclass(frozen=True)
class Outage:
    """A silence in one device's data (device time)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Its length."""
        return self.end - self.start


@dataclass(frozen=True)
class DeviceQuality:
    """One device's figures over the measured window."""

    device: str
    samples: int
    expected: float | None
    completeness: float | None
    sessions: int
    seq_missing: int
    """Sequence numbers never received (gaps within each session)."""
    outages: list[Outage]


class QualityCollector:
    """Fold samples in (``add``), then ask for figures per device (``result``)."""

    def __init__(self, windows: list[tuple[float, float]], intervals: dict[str, float | None]):
        """``windows``: measured device-time windows; ``intervals``: nominal sampling interval
        of each device (None: inferred from the data)."""
        self.windows = windows
        self.intervals = intervals
        self._devices: dict[str, _Device] = {d: _Device() for d in intervals}

    def add(self, sample: Sample) -> None:
        """Take one spooled sample."""
        d = self._devices.get(sample.device)
        if d is None:
            return
        if any(lo <= sample.ts < hi for lo, hi in self.windows):
            d.ts.append(sample.ts)
        first, last, count = d.sessions.get(sample.session, (sample.seq, sample.seq, 0))
        d.sessions[sample.session] = (min(first, sample.seq), max(last, sample.seq), count + 1)

    def result(self) -> list[DeviceQuality]:
        """Figures per device, in the order the devices were given."""
        total = sum(hi - lo for lo, hi in self.windows)
        out = []
        for key, d in self._devices.items():
            ts = np.unique(np.array(d.ts, dtype=np.float64))
            interval = self.intervals.get(key)
            if not interval and ts.size > 1:
                interval = float(np.median(np.diff(ts)))
            expected = total / interval if interval else None
            completeness = min(1.0, ts.size / expected) if expected else None
            missing = sum(
                max(0, last - first + 1 - count) for first, last, count in d.sessions.values()
            )
            out.append(
                DeviceQuality(
                    device=key,
                    samples=int(ts.size),
                    expected=expected,
                    completeness=completeness,
                    sessions=len(d.sessions),
                    seq_missing=missing,
                    outages=self._outages(ts, interval),
                )
            )
        return out

    def _outages(self, ts: np.ndarray, interval: float | None) -> list[Outage]:
        limit = max(OUTAGE_MIN_S, OUTAGE_INTERVALS * (interval or 60.0))
        out: list[Outage] = []
        for lo, hi in self.windows:
            inside = ts[(ts >= lo) & (ts < hi)]
            edges = np.concatenate(([lo], inside, [hi]))
            gaps = np.diff(edges)
            for i in np.nonzero(gaps > limit)[0]:
                out.append(Outage(float(edges[i]), float(edges[i + 1])))
        return out
