"""The street under a lamppost: traffic flow and road noise over the day.

Traffic is a diurnal flow (vehicles/hour): a night floor, a daytime plateau and morning and
evening rush peaks, lighter at weekends. Road noise follows the flow (an equivalent level
rising 10 dB per tenfold flow, as for a line source). Both are tabulated once on a 1-minute
grid of the local day, so a node only interpolates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_GRID = np.arange(0.0, 24.0 * 60.0 + 1.0)  # minutes of the day, both ends included
_WEEKEND = 0.75
"""Weekend flow relative to a weekday."""


def _bump(hour: FloatArray, centre: float, width: float) -> FloatArray:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.asarray(np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)


def _weekday_flow(hour: FloatArray) -> FloatArray:
    """Vehicles/hour of a busy urban road on a weekday."""
    day = 1.0 / (1.0 + np.exp(-(hour - 6.5) * 2.0)) * (1.0 / (1.0 + np.exp((hour - 22.0) * 1.5)))
    return np.asarray(
        40.0 + 520.0 * day + 480.0 * _bump(hour, 8.0, 1.1) + 520.0 * _bump(hour, 18.0, 1.4),
        dtype=np.float64,
    )


class StreetProfile:
    """Traffic flow and road noise at local times, for a road of a given size."""

    def __init__(self, utc_offset_h: float) -> None:
        self.offset_s = utc_offset_h * 3600.0
        self._flow = _weekday_flow(_GRID / 60.0)

    def flow(self, t: FloatArray) -> FloatArray:
        """Vehicles/hour at epoch seconds ``t`` (a road of scale 1)."""
        local = t + self.offset_s
        minute = np.mod(local, 86400.0) / 60.0
        # 1970-01-01 was a Thursday: weekday 0 = Monday.
        weekday = (np.floor(local / 86400.0).astype(np.int64) + 3) % 7
        scale = np.where(weekday >= 5, _WEEKEND, 1.0)
        return np.asarray(np.interp(minute, _GRID, self._flow) * scale, dtype=np.float64)


def road_noise_dba(flow_vph: FloatArray, base_dba: float) -> FloatArray:
    """Equivalent road-noise level for a flow: ``base + 10·log10(flow + 10)``."""
    return np.asarray(base_dba + 10.0 * np.log10(flow_vph + 10.0), dtype=np.float64)
