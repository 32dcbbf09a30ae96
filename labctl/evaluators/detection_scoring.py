"""Scoring one device's detections against ground truth: COCO metrics, the operating point,
latency, bootstrap intervals, criteria, condition breakdown and limitations.

Used by the ``detection-accuracy`` evaluator for a trial (images = the frames presented) and
by ``labctl eval detections`` for files (images = every image of the ground truth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl.evaluators.base import Subject
from labctl.evaluators.breakdown import Bin
from labctl.evaluators.coco import (
    STAT_NAMES,
    BoolArray,
    CocoParams,
    FloatArray,
    IntArray,
    ap_at,
    evaluate,
)
from labctl.evaluators.coco_data import CocoDetections, CocoGroundTruth
from labctl.evaluators.detection_breakdown import BIN_METRICS, breakdown
from labctl.evaluators.operating_point import bootstrap_ci, operating_point
from labctl.evaluators.result import CriterionOutcome, Metric, SubjectResult
from labctl.trial.criteria import Criterion

LATENCY_METRICS: tuple[str, ...] = ("latency_p50", "latency_p95", "latency_p99")
COUNTERS: tuple[str, ...] = (
    "messages",
    "duplicate_messages",
    "unknown_frames",
    "late_messages",
    "unanswered_frames",
    "boxes_outside",
    "boxes_clipped",
    "unknown_labels",
    "bad_values",
)
"""What the evaluator counts per subject besides the metrics (see its module docstring)."""
KNOWN_METRICS: tuple[str, ...] = (
    *STAT_NAMES,
    "precision",
    "recall",
    "f1",
    "id_accuracy",
    *LATENCY_METRICS,
    "missed_deadlines",
    "frames",
    "gt_objects",
    "detections",
    *COUNTERS,
)
"""Every metric a criterion may name."""
ONLINE_ONLY: tuple[str, ...] = (*LATENCY_METRICS, "missed_deadlines", *COUNTERS)
"""Metrics only a trial measures (a results file carries no timing or messages)."""
UNITS: Mapping[str, str] = {m: "s" for m in LATENCY_METRICS}


@dataclass(frozen=True, slots=True)
class Settings:
    """How subjects are judged."""

    criteria: Mapping[str, Criterion]
    bins: Mapping[str, Sequence[Bin]] = field(default_factory=dict)
    iou: float = 0.5
    """IoU threshold of the operating point (precision, recall, F1, identification)."""
    bootstrap: int = 200
    seed: int = 0


@dataclass(frozen=True, eq=False, slots=True)
class SubjectData:
    """What one subject is judged on."""

    subject: Subject
    gt: CocoGroundTruth
    """The evaluated images (for a trial: one per presented frame) and their objects."""
    dt: CocoDetections
    """Detections counted, with image indices of ``gt``."""
    latency: FloatArray | None = None
    """Per image: seconds from presentation to the first answer (NaN: none); None offline."""
    counters: Mapping[str, int] = field(default_factory=dict)


def _percentiles(values: FloatArray) -> list[float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [None, None, None]
    return [float(x) for x in np.percentile(finite, [50.0, 95.0, 99.0])]


def _one_factor_at_a_time(
    gt: CocoGroundTruth, values: dict[str, FloatArray]
) -> dict[str, FloatArray]:
    """On a grid dataset each image varies one condition from the baseline; binning every
    image by one condition would mix in the others' harsh values (a dark image lands in the
    "no blur" bin). So a condition's breakdown keeps the images whose other conditions are
    at the baseline: the rest get NaN for it, which is in no bin."""
    assert gt.baseline is not None
    names = list(gt.baseline)
    table = np.array(
        [[float(c.get(n, math.nan)) for n in names] for c in gt.conditions], dtype=np.float64
    ).reshape(-1, len(names))
    at_base = np.isclose(table, np.array([gt.baseline[n] for n in names]))
    out = {}
    for cond, v in values.items():
        if cond not in gt.baseline:
            out[cond] = v
            continue
        others = np.delete(at_base, names.index(cond), axis=1).all(axis=1)
        out[cond] = np.where(others, v, math.nan)
    return out


def score_subject(data: SubjectData, settings: Settings) -> SubjectResult:
    """Every metric, criterion outcome, breakdown bin and limitation of one subject."""
    gt, dt = data.gt, data.dt
    n_img, n_cat = gt.n_images, gt.n_categories
    params = CocoParams()
    coco = evaluate(gt.boxes, dt.boxes, n_img, n_cat, params)
    op = operating_point(gt.boxes, gt.register_id, dt.boxes, dt.ref, n_img, n_cat, iou=settings.iou)
    total = op.total()
    ap50_index = 0  # params.iou_thrs[0] == 0.5

    def resample(w: IntArray) -> list[float | None]:
        return [ap_at(coco.matches, params, ap50_index, w), op.total(w).recall]

    ci = bootstrap_ci(n_img, resample, settings.bootstrap, settings.seed)
    ci_of = dict(zip(("ap50", "recall"), ci, strict=False))

    values: dict[str, float | None] = {name: coco.stat(name) for name in STAT_NAMES}
    values.update(
        precision=total.precision,
        recall=total.recall,
        f1=total.f1,
        id_accuracy=total.id_accuracy,
    )
    if data.latency is not None:
        values.update(zip(LATENCY_METRICS, _percentiles(data.latency), strict=True))
    values.update(
        frames=float(n_img),
        gt_objects=float(total.positives),
        detections=float(dt.boxes.image.size),
    )
    if data.latency is not None:
        c = data.counters
        values["missed_deadlines"] = float(
            c.get("late_messages", 0) + c.get("unanswered_frames", 0)
        )
        values.update({k: float(c.get(k, 0)) for k in COUNTERS})
    metrics = [
        Metric(name=k, value=v, unit=UNITS.get(k, ""), ci95=ci_of.get(k)) for k, v in values.items()
    ]
    outcomes = [
        CriterionOutcome(
            metric=name,
            value=values.get(name),
            target=crit.describe(),
            passed=crit.holds(values.get(name)),
        )
        for name, crit in settings.criteria.items()
    ]

    def metrics_for(mask: BoolArray) -> tuple[int, dict[str, float | None]]:
        w = mask.astype(np.int64)
        t = op.total(w)
        out: dict[str, float | None] = {
            "ap50": ap_at(coco.matches, params, ap50_index, w),
            "recall": t.recall,
            "precision": t.precision,
            "f1": t.f1,
            "id_accuracy": t.id_accuracy,
        }
        if data.latency is not None:
            out["latency_p95"] = _percentiles(data.latency[mask])[1]
        assert set(out) <= set(BIN_METRICS)
        return t.positives, out

    cond_values = {
        cond: np.array([float(c.get(cond, math.nan)) for c in gt.conditions], dtype=np.float64)
        for cond in settings.bins
    }
    if gt.baseline:
        cond_values = _one_factor_at_a_time(gt, cond_values)
    key = data.subject.key
    bins, limitations = breakdown(
        key, cond_values, settings.bins, metrics_for, settings.criteria, UNITS
    )
    s = data.subject
    return SubjectResult(
        subject=key,
        vendor=s.vendor,
        device=s.device,
        model=s.model,
        metrics=metrics,
        criteria=outcomes,
        passed=all(o.passed for o in outcomes),
        breakdown=bins,
        limitations=limitations,
    )
