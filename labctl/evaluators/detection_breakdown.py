"""Condition bins for the detection-accuracy evaluator, and where each criterion stops holding.

Each image carries scene conditions (``light``, ``blur``, ``noise``, ``rain``, ``occlusion``,
``angle``, ``size``). For every condition the spec names, images are binned (edges from the
spec's ``bins`` or :data:`labctl.evaluators.breakdown.DEFAULT_EDGES`), the per-bin metrics are
computed on the images of the bin, and the criteria on those metrics are judged per bin when
the bin holds at least :data:`MIN_OBJECTS_TO_JUDGE` ground-truth objects.

A limitation names, for each criterion, the first bin where it fails when walking from the
benign end of the condition to the harsh end. The harsh end is the high end, except for
``light`` and ``size`` (darker scenes and smaller signboards are harder): e.g. "recall drops
below 0.8 (0.62) when blur σ ≥ 3 px", or "… when size < 40 px".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np

from labctl.evaluators.breakdown import (
    DEFAULT_EDGES,
    Bin,
    check_edges,
    format_value,
    join_words,
    make_bins,
)
from labctl.evaluators.coco import BoolArray, FloatArray
from labctl.evaluators.result import BinResult, Limitation
from labctl.trial.criteria import Criterion

HARSH_LOW: Final = frozenset({"light", "size", "brightness", "contrast", "sharpness"})
"""Conditions whose harsh end is the low end (dark scenes, small signboards; dark, flat or
blurred camera frames)."""

MIN_OBJECTS_TO_JUDGE = 10
"""A bin with fewer ground-truth objects is shown but not judged."""

BIN_METRICS: tuple[str, ...] = ("ap50", "recall", "precision", "f1", "id_accuracy", "latency_p95")
"""Metrics computed per bin; criteria on these are judged per bin."""

BinMetrics = Callable[[BoolArray], tuple[int, dict[str, float | None]]]
"""Given a mask of images, the number of ground-truth objects and the metrics on them."""


def condition_bins(
    conditions: Sequence[str], bins: Mapping[str, Sequence[float]] | None, notes: list[str]
) -> dict[str, list[Bin]]:
    """Bins of each condition (unique, in order): given edges, else the defaults; a condition
    with neither is noted and skipped. Raises ValueError for bad edges."""
    given = dict(bins or {})
    out: dict[str, list[Bin]] = {}
    for cond in dict.fromkeys(conditions):
        if cond in given:
            edges = check_edges(cond, given[cond])
        elif cond in DEFAULT_EDGES:
            edges = DEFAULT_EDGES[cond]
        else:
            notes.append(
                f"condition {cond!r} has no bin edges (give 'bins: {{{cond}: [...]}}'); "
                "not broken down"
            )
            continue
        out[cond] = make_bins(cond, edges)
    return out


def benign_to_harsh(condition: str, items: Sequence[BinResult]) -> list[BinResult]:
    """Bins (in ascending order) reordered from the benign end to the harsh end."""
    return list(reversed(items)) if condition in HARSH_LOW else list(items)


def where_words(condition: str, b: BinResult) -> str:
    """``when blur σ ≥ 3 px`` for the first failing bin walking toward the harsh end (``when
    light < 0.3`` for conditions harsh at the low end); ``even when …`` with the bin's label
    when it is the benign-most bin."""
    if condition in HARSH_LOW:
        if b.upper is None:
            return f"even when {b.label}"
        return f"when {make_bins(condition, [b.upper])[0].label}"
    if b.lower is None:
        return f"even when {b.label}"
    return f"when {make_bins(condition, [b.lower])[1].label}"


def failure_words(metric: str, criterion: Criterion, value: float | None, unit: str) -> str:
    """``recall drops below 0.8 (0.615)``, ``latency_p95 rises above 0.5 s (0.72 s)``."""
    u = f" {unit}" if unit else ""
    if criterion.min is not None:
        verb = f"drops below {criterion.min:g}{u}"
    elif criterion.max is not None:
        verb = f"rises above {criterion.max:g}{u}"
    else:
        assert criterion.between is not None
        lo, hi = criterion.between
        verb = f"leaves {lo:g}–{hi:g}{u}"
    return f"{metric} {verb} ({format_value(value, unit)})"


def first_failures(
    subject: str,
    condition: str,
    results: Sequence[BinResult],
    criteria: Mapping[str, Criterion],
    units: Mapping[str, str],
) -> list[Limitation]:
    """One limitation per bin where some criterion first fails, walking benign → harsh.
    Bins not judged (too few objects) are passed over."""
    first: dict[str, BinResult] = {}
    for b in benign_to_harsh(condition, results):
        for metric in b.failed:
            first.setdefault(metric, b)
    out: list[Limitation] = []
    for b in benign_to_harsh(condition, results):
        names = [m for m in criteria if first.get(m) is b]
        if not names:
            continue
        parts = [failure_words(m, criteria[m], b.metrics.get(m), units.get(m, "")) for m in names]
        text = f"{subject}: {join_words(parts)} {where_words(condition, b)}"
        out.append(
            Limitation(subject=subject, condition=condition, bin=b.label, criteria=names, text=text)
        )
    return out


def breakdown(
    subject: str,
    values: Mapping[str, FloatArray],
    bins: Mapping[str, Sequence[Bin]],
    metrics_for: BinMetrics,
    criteria: Mapping[str, Criterion],
    units: Mapping[str, str],
) -> tuple[list[BinResult], list[Limitation]]:
    """Per-bin metrics and limitations of one subject. ``values`` holds each condition's value
    per image (NaN where the image does not say)."""
    judged = {n: c for n, c in criteria.items() if n in BIN_METRICS}
    results: list[BinResult] = []
    limitations: list[Limitation] = []
    for cond, cond_bins in bins.items():
        v = values[cond]
        per_cond: list[BinResult] = []
        for b in cond_bins:
            lo = -math.inf if b.lower is None else b.lower
            hi = math.inf if b.upper is None else b.upper
            mask = (v >= lo) & (v < hi)  # NaN is in no bin
            n, metrics = metrics_for(mask)
            metrics["images"] = float(np.count_nonzero(mask))
            failed = (
                [m for m, c in judged.items() if not c.holds(metrics.get(m))]
                if n >= MIN_OBJECTS_TO_JUDGE
                else []
            )
            per_cond.append(
                BinResult(
                    condition=cond,
                    label=b.label,
                    lower=b.lower,
                    upper=b.upper,
                    n=n,
                    metrics=metrics,
                    failed=failed,
                )
            )
        results.extend(per_cond)
        limitations.extend(first_failures(subject, cond, per_cond, judged, units))
    return results, limitations
