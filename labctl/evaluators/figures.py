"""Summary figures of the observing evaluators: percentiles, ratios, proportion intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Z95 = 1.959963984540054
"""The two-sided 95 % standard normal quantile."""


def percentiles(
    values: Sequence[float] | npt.NDArray[np.float64], qs: Sequence[float]
) -> list[float | None]:
    """``numpy.percentile`` (linear interpolation) at each ``q``; None for no values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return [None for _ in qs]
    return [float(v) for v in np.percentile(arr, list(qs))]


def ratio(num: float, den: float) -> float | None:
    """``num / den``; None when there is nothing to divide by."""
    return num / den if den > 0 else None


def wilson_ci95(successes: int, n: int) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of a proportion (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    z2 = Z95 * Z95
    den = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)
