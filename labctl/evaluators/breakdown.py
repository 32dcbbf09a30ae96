"""Condition bins and limitations in words, for the sensor-accuracy breakdown.

Bins are half-open intervals between ascending edges: edges [60, 75, 85] give
[-inf, 60), [60, 75), [75, 85), [85, inf), labelled "RH < 60 %", "60 % ≤ RH < 75 %",
"75 % ≤ RH < 85 %", "RH ≥ 85 %".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

DEFAULT_EDGES: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        "rh": (60.0, 75.0, 85.0),
        "temperature": (10.0, 20.0, 30.0),
        # Scene conditions (image ``conditions``) of the detection-accuracy evaluator.
        "blur": (1.0, 2.0, 3.0),
        "light": (0.3, 0.6),
        "noise": (5.0, 10.0, 20.0),
        "rain": (0.2, 0.5),
        "occlusion": (0.2, 0.4),
        "angle": (20.0, 40.0),
        "size": (40.0, 80.0),
        # Measured on live camera frames (grey levels; sharpness: variance of the Laplacian).
        "brightness": (60.0, 120.0),
        "contrast": (20.0, 40.0),
        "sharpness": (50.0, 200.0),
    }
)
"""Bin edges used when a spec names a condition without giving ``bins``."""

_SYMBOLS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "rh": ("RH", "%"),
        "temperature": ("T", "°C"),
        "loss_pct": ("loss", "%"),
        "delay_ms": ("delay", "ms"),
        "blur": ("blur σ", "px"),
        "light": ("light", ""),
        "noise": ("noise σ", ""),
        "rain": ("rain", ""),
        "occlusion": ("occlusion", ""),
        "angle": ("angle", "°"),
        "size": ("size", "px"),
    }
)

MIN_PAIRS_TO_JUDGE = 10
"""A bin with fewer pairs is reported but not judged: too little data for a verdict."""


@dataclass(frozen=True, slots=True)
class Bin:
    """One condition bin: ``lower ≤ value < upper`` (None = unbounded)."""

    condition: str
    label: str
    lower: float | None
    upper: float | None


def condition_symbol(condition: str) -> tuple[str, str]:
    """How a condition is written in labels: (symbol, unit), e.g. ``("loss", "%")``."""
    return _SYMBOLS.get(condition, (condition, ""))


def check_edges(condition: str, edges: Sequence[float]) -> tuple[float, ...]:
    """Edges as a tuple; ValueError in words unless finite and strictly ascending."""
    out = tuple(float(e) for e in edges)
    if not out:
        raise ValueError(f"bins for {condition!r} need at least one edge")
    if any(not math.isfinite(e) for e in out):
        raise ValueError(f"bins for {condition!r} must be finite numbers, got {list(out)}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"bins for {condition!r} must be strictly ascending, got {list(out)}")
    return out


def make_bins(condition: str, edges: Sequence[float]) -> list[Bin]:
    """The bins between ``edges`` in ascending order, labelled in words."""
    symbol, unit = _SYMBOLS.get(condition, (condition, ""))

    def q(x: float) -> str:
        return f"{x:g} {unit}" if unit else f"{x:g}"

    bounds: list[float | None] = [None, *edges, None]
    bins = []
    for lower, upper in itertools.pairwise(bounds):
        if lower is None and upper is not None:
            label = f"{symbol} < {q(upper)}"
        elif upper is None and lower is not None:
            label = f"{symbol} ≥ {q(lower)}"
        else:
            assert lower is not None
            assert upper is not None
            label = f"{q(lower)} ≤ {symbol} < {q(upper)}"
        bins.append(Bin(condition, label, lower, upper))
    return bins


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def format_value(value: float | None, unit: str) -> str:
    """A figure for sentences: three significant digits and its unit."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.3g}"
    if unit == "%":
        return f"{text} %"
    return f"{text} {unit}" if unit else text


def limitation_text(
    subject: str, failures: Sequence[tuple[str, float | None, str, str]], where: str
) -> str:
    """``<subject> fails r2 (0.41, target ≥ 0.7) and rmse (12.3 µg/m³, target ≤ 7) when <where>``.

    ``failures`` holds (metric, value, unit, target in words).
    """
    parts = [
        f"{metric} ({format_value(value, unit)}, target {target})"
        for metric, value, unit, target in failures
    ]
    return f"{subject} fails {join_words(parts)} when {where}"
