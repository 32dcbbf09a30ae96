"""The device's operating point: precision, recall, F1 and identification accuracy, and
bootstrap confidence intervals by image.

A device under test has already applied its own score threshold, so every detection it
reports counts. Matching is greedy by descending score at one IoU threshold (default 0.5) per
image and category, by the same rules as COCO (:func:`labctl.evaluators.coco.match`) without
the 100-detections cut or area ranges:

* crowd ground truth (``iscrowd``) is ignored: it is not an object to find, and a detection
  that can only be matched to a crowd region is neither a true nor a false positive;
* a true positive is a detection matched to other ground truth; a false positive is one matched
  to nothing; recall = true positives / non-crowd ground truth objects;
* identification accuracy = the fraction of non-crowd ground truth objects with a register id
  whose matched detection carries that id as its ``ref`` (None when no object has an id).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labctl.evaluators.coco import DtBoxes, FloatArray, GtBoxes, IntArray, match


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Counts and rates of one set of images."""

    tp: int
    fp: int
    positives: int
    """Non-crowd ground truth objects."""
    id_correct: int
    id_total: int
    """Non-crowd ground truth objects that have a register id."""

    @property
    def fn(self) -> int:
        """Objects not found."""
        return self.positives - self.tp

    @property
    def precision(self) -> float | None:
        """tp / (tp + fp); None without detections."""
        n = self.tp + self.fp
        return self.tp / n if n else None

    @property
    def recall(self) -> float | None:
        """tp / positives; None without objects."""
        return self.tp / self.positives if self.positives else None

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall; None when either is undefined."""
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def id_accuracy(self) -> float | None:
        """Correctly identified / objects with a register id; None when none has one."""
        return self.id_correct / self.id_total if self.id_total else None


@dataclass(frozen=True, eq=False, slots=True)
class PerImage:
    """Operating-point tallies per image: any subset or resample of images is a weighted sum."""

    tp: IntArray
    fp: IntArray
    positives: IntArray
    id_correct: IntArray
    id_total: IntArray
    det_gt: IntArray
    """Per input detection: index of the ground truth it matched (-1: none or dropped)."""

    def total(self, weights: IntArray | None = None) -> OperatingPoint:
        """The operating point of all images, or of ``weights`` copies of each."""

        def s(a: IntArray) -> int:
            return int(a.sum() if weights is None else a @ weights)

        return OperatingPoint(
            s(self.tp), s(self.fp), s(self.positives), s(self.id_correct), s(self.id_total)
        )


def operating_point(
    gt: GtBoxes,
    gt_register: Sequence[str | None],
    dt: DtBoxes,
    dt_ref: Sequence[str | None],
    n_images: int,
    n_categories: int,
    iou: float = 0.5,
) -> PerImage:
    """Match every detection at IoU ≥ ``iou`` and tally per image (see the module's rules)."""
    m = match(
        gt,
        dt,
        n_images,
        n_categories,
        iou_thrs=[iou],
        area_rngs=[(-np.inf, np.inf)],
        max_det=None,
    )
    tp, fp = m.tp[0, 0], m.fp[0, 0]
    det_gt = np.full(dt.image.size, -1, dtype=np.int64)
    det_gt[m.det_src] = m.det_gt[0, 0]
    counted = (gt.category >= 0) & ~gt.crowd
    has_id = counted & np.array([r is not None for r in gt_register], dtype=bool).reshape(-1)
    hit = np.flatnonzero(det_gt >= 0)
    correct = np.zeros(gt.image.size, dtype=bool)
    refs = [dt_ref[i] for i in hit.tolist()]
    regs = [gt_register[g] for g in det_gt[hit].tolist()]
    same = np.array([r is not None and r == g for r, g in zip(refs, regs, strict=True)], dtype=bool)
    correct[det_gt[hit][same]] = True
    correct &= has_id

    def per_image(images: IntArray) -> IntArray:
        return np.bincount(images, minlength=n_images).astype(np.int64)

    return PerImage(
        tp=per_image(m.det_image[tp]),
        fp=per_image(m.det_image[fp]),
        positives=per_image(gt.image[counted]),
        id_correct=per_image(gt.image[correct]),
        id_total=per_image(gt.image[has_id]),
        det_gt=det_gt,
    )


def bootstrap_ci(
    n_images: int,
    statistic: Callable[[IntArray], Sequence[float | None]],
    resamples: int = 200,
    seed: int = 0,
) -> list[tuple[float, float] | None]:
    """Percentile 95 % intervals of each figure ``statistic`` returns, over ``resamples``
    resamples of the images with replacement (``statistic`` gets the per-image counts of a
    resample). Deterministic for a seed; None for a figure undefined in every resample."""
    if n_images == 0 or resamples <= 0:
        return []
    rng = np.random.default_rng(seed)
    values: list[list[float]] = []
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
        got = statistic(weights.astype(np.int64))
        if not values:
            values = [[] for _ in got]
        for store, v in zip(values, got, strict=True):
            if v is not None:
                store.append(v)
    out: list[tuple[float, float] | None] = []
    for store in values:
        if not store:
            out.append(None)
            continue
        arr: FloatArray = np.asarray(store, dtype=np.float64)
        lo, hi = np.percentile(arr, [2.5, 97.5])
        out.append((float(lo), float(hi)))
    return out
