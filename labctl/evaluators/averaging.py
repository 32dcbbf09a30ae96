"""Streaming hourly accumulators and the EPA averaging rules built on them.

A subject's samples are folded into one cell per UTC clock hour as they arrive (sum, count,
condition sums), so memory grows with hours, never with samples (plus a
bounded probe of timestamps for inferring the sampling interval), and the order of arrival
does not matter. At ``result()`` time the cells become arrays:

* an hour is valid when MORE than 75 % of its expected samples are present
  (expected = 3600 s / nominal interval, e.g. ≥ 46 of 60 for 1-minute data; 1 of 1 for
  hourly data);
* a longer period of k hours (24 h: a UTC calendar day) is the mean of its VALID hourly values,
  kept when more than 75 % of its k hours are valid (≥ 19 of 24).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HOUR_S = 3600
COMPLETENESS = 0.75
"""A period is valid when more than this fraction of its expected parts are present."""

INTERVAL_PROBE = 4096
"""Timestamps kept per subject (the first received) to infer the sampling interval: bounded
memory, yet thousands of spacings for a robust median."""

# Layout of one hour cell: [sum, count, cond0 sum, cond0 count, …].
_SUM, _COUNT, _COND0 = 0, 1, 2


class HourlyAccumulator:
    """Per-UTC-hour sums of one subject's ``channel`` and condition channels.

    ``add`` is called once per sample, so it does only dict look-ups and float additions.
    """

    __slots__ = ("_cells", "_cond_slots", "_probe", "channel", "conditions")

    def __init__(self, channel: str, conditions: Sequence[str] = ()) -> None:
        self.channel = channel
        self.conditions = tuple(conditions)
        self._cond_slots = tuple((_COND0 + 2 * i, c) for i, c in enumerate(self.conditions))
        self._cells: dict[int, list[float]] = {}
        self._probe: list[float] = []

    def add(self, ts: float, values: Mapping[str, float]) -> None:
        """Fold one sample at epoch seconds ``ts`` in; NaN or absent values are missing."""
        hour = int(ts // HOUR_S)
        cell = self._cells.get(hour)
        if cell is None:
            cell = [0.0, 0.0] + [0.0, 0.0] * len(self._cond_slots)
            self._cells[hour] = cell
        v = values.get(self.channel)
        if v is not None and v == v:  # v == v is False only for NaN
            cell[_SUM] += v
            cell[_COUNT] += 1.0
            if len(self._probe) < INTERVAL_PROBE:
                self._probe.append(ts)
        for slot, name in self._cond_slots:
            c = values.get(name)
            if c is not None and c == c:
                cell[slot] += c
                cell[slot + 1] += 1.0

    def table(self) -> HourTable:
        """The cells as arrays sorted by hour."""
        hours = np.array(sorted(self._cells), dtype=np.int64)
        width = _COND0 + 2 * len(self.conditions)
        data = np.array([self._cells[int(h)] for h in hours], dtype=np.float64).reshape(-1, width)
        conds: dict[str, tuple[FloatArray, FloatArray]] = {}
        for slot, name in self._cond_slots:
            conds[name] = (data[:, slot], data[:, slot + 1])
        return HourTable(
            hours=hours,
            sums=data[:, _SUM],
            counts=data[:, _COUNT],
            conditions=conds,
            probe=np.sort(np.array(self._probe, dtype=np.float64)),
        )


@dataclass(frozen=True, slots=True)
class HourTable:
    """One subject's hour cells as arrays (index = hours since the epoch, UTC)."""

    hours: IntArray
    sums: FloatArray
    counts: FloatArray
    conditions: Mapping[str, tuple[FloatArray, FloatArray]]
    """Condition name → (sums, counts) per hour."""
    probe: FloatArray
    """The first timestamps received (at most :data:`INTERVAL_PROBE`), sorted."""

    @property
    def samples(self) -> int:
        """Samples of the channel received."""
        return int(self.counts.sum())

    def condition_means(self, name: str) -> Series:
        """Hourly mean of a condition channel, for hours where it was reported."""
        sums, counts = self.conditions[name]
        ok = counts > 0
        return Series(self.hours[ok], sums[ok] / counts[ok])


@dataclass(frozen=True, slots=True)
class Series:
    """Averaged values keyed by period start, in hours since the epoch (sorted, unique)."""

    starts: IntArray
    values: FloatArray

    def __len__(self) -> int:
        return int(self.starts.size)


def infer_interval(table: HourTable) -> float | None:
    """The nominal sampling interval (s) when the subject does not declare one.

    The median spacing between consecutive distinct timestamps of the first
    :data:`INTERVAL_PROBE` samples received (sorted, so arrival order does not matter); the
    median ignores the spacings that gaps widen as long as most samples are present. Rounded
    to whole seconds (milliseconds below 2 s) so that clock jitter does not move the 75 %
    threshold. None when there are fewer than two distinct timestamps.
    """
    ts = np.unique(table.probe)
    if ts.size < 2:
        return None
    interval = float(np.median(np.diff(ts)))
    return float(round(interval)) if interval >= 2 else round(interval, 3)


def expected_per_hour(interval_s: float) -> float:
    """Samples expected in one hour at ``interval_s``; at least one (hourly or slower data)."""
    expected = HOUR_S / interval_s
    nearest = round(expected)
    if abs(expected - nearest) <= 1e-9 * max(1.0, expected):
        expected = float(nearest)
    return max(1.0, expected)


def min_valid(expected: float) -> int:
    """The fewest parts that are MORE than 75 % of ``expected``: 46 of 60, 19 of 24, 1 of 1."""
    return math.floor(COMPLETENESS * expected + 1e-9) + 1


def hourly_means(table: HourTable, expected: float) -> Series:
    """Valid 1-hour means: hours with more than 75 % of ``expected`` samples."""
    ok = table.counts >= min_valid(expected)
    return Series(table.hours[ok], table.sums[ok] / table.counts[ok])


def block_means(hourly: Series, hours: int) -> Series:
    """Means of valid hourly values over blocks of ``hours`` aligned to UTC (24: calendar days).

    A block is kept when more than 75 % of its hours are valid. Keys are block starts in hours.
    """
    if hours < 1:
        raise ValueError(f"an averaging period is a whole number of hours ≥ 1, got {hours}")
    if hours == 1:
        return hourly
    if len(hourly) == 0:
        return hourly
    block = np.floor_divide(hourly.starts, hours)
    keys, inverse = np.unique(block, return_inverse=True)
    counts = np.bincount(inverse, minlength=keys.size)
    sums = np.bincount(inverse, weights=hourly.values, minlength=keys.size)
    ok = counts >= min_valid(float(hours))
    return Series((keys[ok] * hours).astype(np.int64), sums[ok] / counts[ok])


def pair(reference: Series, candidate: Series) -> tuple[IntArray, FloatArray, FloatArray]:
    """Periods present in both series: (starts, reference values, candidate values)."""
    starts, ri, ci = np.intersect1d(
        reference.starts, candidate.starts, assume_unique=True, return_indices=True
    )
    return starts.astype(np.int64), reference.values[ri], candidate.values[ci]


def averaging_hours(seconds: float) -> int:
    """An averaging period in whole hours; ValueError in words for anything else."""
    if seconds < HOUR_S:
        raise ValueError(
            f"averaging must be at least 1 h (the EPA rules build on 1-hour averages); "
            f"got {seconds:g} s"
        )
    hours = seconds / HOUR_S
    if abs(hours - round(hours)) > 1e-9:
        raise ValueError(f"averaging must be a whole number of hours, got {seconds:g} s")
    return round(hours)


def averaging_label(hours: int) -> str:
    """The key of an averaging period in results: ``1h``, ``24h``, ``168h``."""
    return f"{hours}h"
