"""COCO bounding-box evaluation in numpy, equal to pycocotools' ``COCOeval(iouType="bbox")``.

The rules are pycocotools' own (``cocoeval.py`` 2.0), reproduced exactly so the figures agree
to rounding (``tests/unit/test_coco_eval.py`` checks them on generated files):

* Images are taken in ascending id order, categories in ascending id order; detections of a
  category the ground truth does not list are not evaluated.
* Per image and category, detections are sorted by descending score with a *stable* sort (ties
  keep file order) and only the first ``max_dets[-1]`` (100) are kept.
* IoU is pycocotools' ``bbIou``: intersection over union, except for crowd ground truth
  (``iscrowd``), where it is intersection over the detection's area.
* Matching is greedy per IoU threshold, in score order: a detection takes the not yet matched
  (crowd: any) ground truth with the highest IoU ≥ the threshold, preferring ground truth that
  is not ignored, and among equal IoUs the one last in file order. Ground truth is ignored when
  it is crowd or its ``area`` field lies outside the area range; a detection matched to ignored
  ground truth is ignored, and so is an unmatched one whose box area (w·h) lies outside it.
* Precision at 101 recall points from the interpolated (monotone) precision curve of all
  detections sorted by score across images (stable: ties in image order, then file order).

The work is vectorised across images: matching iterates only over detection ranks (at most 100)
and handles every image, IoU threshold and area range at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

STAT_NAMES: tuple[str, ...] = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)
"""Names of pycocotools' 12 summary figures (``COCOeval.stats``), in its order."""


@dataclass(frozen=True, slots=True)
class CocoParams:
    """Evaluation parameters; the defaults are pycocotools' for bounding boxes."""

    iou_thrs: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    rec_thrs: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_rngs: tuple[tuple[float, float], ...] = (
        (0.0, 1e10),
        (0.0, 32.0**2),
        (32.0**2, 96.0**2),
        (96.0**2, 1e10),
    )
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")


@dataclass(frozen=True, eq=False, slots=True)
class GtBoxes:
    """Ground truth objects. ``image`` and ``category`` are 0-based indices (image index order is
    the evaluation's image order); a negative category drops the object."""

    image: IntArray
    category: IntArray
    bbox: FloatArray
    """(N, 4) x, y, w, h."""
    area: FloatArray
    """The annotation's ``area`` field (used for area ranges, not the box's w·h)."""
    crowd: BoolArray
    ann_id: IntArray
    """Annotation ids: pycocotools treats a match to id 0 as no match; so do we."""


@dataclass(frozen=True, eq=False, slots=True)
class DtBoxes:
    """Detections, in file order; ``image`` and ``category`` as in :class:`GtBoxes`."""

    image: IntArray
    category: IntArray
    bbox: FloatArray
    score: FloatArray


@dataclass(frozen=True, eq=False, slots=True)
class Matches:
    """The outcome of matching, per detection kept, in accumulation order (score descending,
    then image, then file order). Arrays shaped (A, T, D) are per area range and threshold."""

    n_images: int
    n_categories: int
    det_src: IntArray
    """Index of each detection in the input."""
    det_image: IntArray
    det_category: IntArray
    det_rank: IntArray
    """Position in its image and category by score (0 = best)."""
    det_gt: IntArray
    """(A, T, D) index into the input ground truth of the match, -1 for none."""
    tp: BoolArray
    fp: BoolArray
    gt_image: IntArray
    gt_category: IntArray
    gt_ignore: BoolArray
    """(A, G) over the input ground truth (dropped objects count as ignored)."""


@dataclass(frozen=True, eq=False, slots=True)
class CocoEvaluation:
    """pycocotools' ``eval['precision']`` (T, R, K, A, M), ``eval['recall']`` (T, K, A, M) and
    ``stats`` (12 figures, -1 where undefined), and the matches they came from."""

    precision: FloatArray
    recall: FloatArray
    stats: FloatArray
    matches: Matches
    params: CocoParams = field(default_factory=CocoParams)

    def stat(self, name: str) -> float | None:
        """One summary figure by name (see :data:`STAT_NAMES`); None where pycocotools says -1."""
        value = float(self.stats[STAT_NAMES.index(name)])
        return None if value == -1 else value


def box_iou(det: FloatArray, gt: FloatArray, crowd: BoolArray) -> FloatArray:
    """Row-wise IoU of boxes ``det[i]`` and ``gt[i]`` (x, y, w, h), as pycocotools' ``bbIou``
    computes it, operation for operation (the results are bit-identical)."""
    w = np.minimum(det[:, 2] + det[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(det[:, 0], gt[:, 0])
    h = np.minimum(det[:, 3] + det[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(det[:, 1], gt[:, 1])
    inter = w * h
    da = det[:, 2] * det[:, 3]
    union = np.where(crowd, da, da + gt[:, 2] * gt[:, 3] - inter)
    ok = (w > 0) & (h > 0)
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=ok)
    return out


def _starts(sorted_keys: IntArray) -> IntArray:
    """Start of each run of equal values in a sorted array."""
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(np.diff(sorted_keys)) + 1)).astype(np.int64)


def match(
    gt: GtBoxes,
    dt: DtBoxes,
    n_images: int,
    n_categories: int,
    *,
    iou_thrs: Sequence[float],
    area_rngs: Sequence[tuple[float, float]],
    max_det: int | None,
) -> Matches:
    """Match detections to ground truth per image and category by pycocotools' rules, at every
    IoU threshold and area range; ``max_det`` None keeps every detection."""
    k = max(n_categories, 1)
    thr = np.minimum(np.asarray(iou_thrs, dtype=np.float64), 1 - 1e-10)
    n_t, n_a = thr.size, len(area_rngs)

    # Detections kept, sorted by (image, category), score descending, file order.
    keep = np.flatnonzero(dt.category >= 0)
    group = dt.image[keep] * k + dt.category[keep]
    order = np.lexsort((keep, -dt.score[keep], group))
    src, group = keep[order], group[order]
    starts = _starts(group)
    rank = np.arange(src.size) - np.repeat(starts, np.diff(np.append(starts, src.size)))
    if max_det is not None:
        cut = rank < max_det
        src, group, rank = src[cut], group[cut], rank[cut]
    n_d = src.size
    d_box = dt.bbox[src]
    d_area = d_box[:, 2] * d_box[:, 3]

    # Ground truth sorted by (image, category), file order within.
    g_keep = np.flatnonzero(gt.category >= 0)
    g_group = gt.image[g_keep] * k + gt.category[g_keep]
    g_order = np.argsort(g_group, kind="stable")
    g_src, g_group = g_keep[g_order], g_group[g_order]

    # Every (detection, ground truth) pair in the same image and category, IoU ≥ lowest threshold.
    lo = np.searchsorted(g_group, group, side="left")
    n_pairs = np.searchsorted(g_group, group, side="right") - lo
    pair_det = np.repeat(np.arange(n_d), n_pairs)
    offsets = np.repeat(np.cumsum(n_pairs) - n_pairs - lo, n_pairs)
    pair_gt = g_src[np.arange(pair_det.size) - offsets]
    crowd = gt.crowd.astype(bool)
    iou = box_iou(d_box[pair_det], gt.bbox[pair_gt], crowd[pair_gt])
    near = iou >= (thr.min() if thr.size else np.inf)
    pair_det, pair_gt, iou = pair_det[near], pair_gt[near], iou[near]

    lows = np.array([a[0] for a in area_rngs], dtype=np.float64)
    highs = np.array([a[1] for a in area_rngs], dtype=np.float64)
    dropped = np.ones(gt.category.shape, dtype=bool)
    dropped[g_keep] = False
    out_of_range = (gt.area[None, :] < lows[:, None]) | (gt.area[None, :] > highs[:, None])
    gt_ignore = crowd[None, :] | dropped[None, :] | out_of_range

    # Pairs in detection-rank order; within a rank, per detection.  For each area range, the
    # priority of a pair is its place in (not ignored, IoU, file order): the greedy step takes
    # the eligible pair of highest priority, which is what pycocotools' loop picks.
    by_rank = np.lexsort((pair_det, rank[pair_det]))
    pair_det, pair_gt, iou = pair_det[by_rank], pair_gt[by_rank], iou[by_rank]
    inverse = np.empty((n_a, iou.size), dtype=np.int64)
    priority = np.empty((n_a, iou.size), dtype=np.int64)
    for a in range(n_a):
        inverse[a] = np.lexsort((pair_gt, iou, ~gt_ignore[a, pair_gt]))
        priority[a, inverse[a]] = np.arange(iou.size)

    rows = n_a * n_t
    row_area = np.repeat(np.arange(n_a), n_t)
    row_thr = np.tile(thr, n_a)[:, None]
    matched = np.zeros((rows, gt.category.size), dtype=bool)
    det_gt = np.full((rows, n_d), -1, dtype=np.int64)
    pair_rank = rank[pair_det]
    bounds = np.append(_starts(pair_rank), pair_rank.size)
    for lo_p, hi_p in itertools.pairwise(bounds.tolist()):
        pd, pg = pair_det[lo_p:hi_p], pair_gt[lo_p:hi_p]
        free = ~matched[:, pg] | crowd[pg]
        eligible = (iou[lo_p:hi_p] >= row_thr) & free
        cand = np.where(eligible, priority[row_area, lo_p:hi_p], -1)
        best = np.maximum.reduceat(cand, _starts(pd), axis=1)
        r, s = np.nonzero(best >= 0)
        p = inverse[row_area[r], best[r, s]]
        det_gt[r, pair_det[p]] = pair_gt[p]
        matched[r, pair_gt[p]] = True

    det_gt3 = det_gt.reshape(n_a, n_t, n_d)
    hit = det_gt3 >= 0
    if gt.category.size:
        safe = np.where(hit, det_gt3, 0)
        has_match = hit & (gt.ann_id[safe] != 0)
        det_ignore = hit & gt_ignore[np.arange(n_a)[:, None, None], safe]
    else:
        has_match, det_ignore = hit, np.zeros_like(hit)
    outside = (d_area[None, :] < lows[:, None]) | (d_area[None, :] > highs[:, None])
    det_ignore |= ~has_match & outside[:, None, :]
    tp = has_match & ~det_ignore
    fp = ~has_match & ~det_ignore

    # Accumulation order: score descending, then image, then file order (pycocotools
    # concatenates images in id order and mergesorts, which is stable).
    acc = np.lexsort((src, dt.image[src], -dt.score[src]))
    return Matches(
        n_images=n_images,
        n_categories=n_categories,
        det_src=src[acc],
        det_image=dt.image[src][acc],
        det_category=dt.category[src][acc],
        det_rank=rank[acc],
        det_gt=det_gt3[:, :, acc],
        tp=tp[:, :, acc],
        fp=fp[:, :, acc],
        gt_image=gt.image,
        gt_category=gt.category,
        gt_ignore=gt_ignore,
    )


def _curve(
    tps: BoolArray, fps: BoolArray, npig: float, rec_thrs: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Interpolated precision at ``rec_thrs`` (T, R) and final recall (T,) of detections in
    score order, computed as pycocotools does."""
    tp_sum = np.cumsum(tps, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(fps, axis=1, dtype=np.float64)
    n_t, nd = tps.shape
    q = np.zeros((n_t, rec_thrs.size))
    if nd == 0:
        return q, np.zeros(n_t)
    rc = tp_sum / npig
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(n_t):
        inds = np.searchsorted(rc[t], rec_thrs, side="left")
        ok = inds < nd
        q[t, ok] = pr[t, inds[ok]]
    return q, rc[:, -1].copy()


def accumulate(
    m: Matches,
    params: CocoParams,
    weights: IntArray | None = None,
    *,
    thresholds: Sequence[int] | None = None,
    areas: Sequence[int] | None = None,
    max_dets: Sequence[int] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Precision (T, R, K, A, M) and recall (T, K, A, M), -1 where a category has no ground
    truth that counts. ``weights`` (per image, ≥ 0) evaluate a resample or subset of the images
    as if each image appeared that many times; the selectors pick threshold, area-range and
    max-dets indices (default: all)."""
    t_sel = np.arange(len(params.iou_thrs)) if thresholds is None else np.asarray(thresholds)
    a_sel = range(len(params.area_rngs)) if areas is None else areas
    m_sel = range(len(params.max_dets)) if max_dets is None else max_dets
    rec = np.asarray(params.rec_thrs, dtype=np.float64)
    n_k = m.n_categories
    precision = -np.ones((t_sel.size, rec.size, n_k, len(a_sel), len(m_sel)))
    recall = -np.ones((t_sel.size, n_k, len(a_sel), len(m_sel)))
    gt_w = np.ones(m.gt_image.size, dtype=np.int64) if weights is None else weights[m.gt_image]
    for k in range(n_k):
        in_k = m.det_category == k
        gt_k = m.gt_category == k
        for ai, a in enumerate(a_sel):
            npig = int(gt_w[gt_k & ~m.gt_ignore[a]].sum())
            if npig == 0:
                continue
            tp_a, fp_a = m.tp[a][t_sel], m.fp[a][t_sel]
            for mi, mm in enumerate(m_sel):
                idx = np.flatnonzero(in_k & (m.det_rank < params.max_dets[mm]))
                if weights is not None:
                    idx = np.repeat(idx, weights[m.det_image[idx]])
                q, r = _curve(tp_a[:, idx], fp_a[:, idx], npig, rec)
                precision[:, :, k, ai, mi] = q
                recall[:, k, ai, mi] = r
    return precision, recall


def _mean_defined(s: FloatArray) -> float:
    """pycocotools' summary mean: over entries > -1, or -1 when there are none."""
    valid = s[s > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def summarize(precision: FloatArray, recall: FloatArray, params: CocoParams) -> FloatArray:
    """pycocotools' 12 ``stats`` (see :data:`STAT_NAMES`) from full accumulate arrays (with
    three max-dets settings, as pycocotools requires)."""
    thrs = np.asarray(params.iou_thrs)
    top = params.max_dets[-1]

    def one(ap: bool, iou: float | None = None, area: str = "all", dets: int = top) -> float:
        a = [i for i, lbl in enumerate(params.area_labels) if lbl == area]
        md = [i for i, d in enumerate(params.max_dets) if d == dets]
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == thrs)[0]]
        s = s[:, :, :, a, md] if ap else s[:, :, a, md]
        return _mean_defined(s)

    d = params.max_dets
    return np.array(
        [
            one(True),
            one(True, 0.5),
            one(True, 0.75),
            one(True, area="small"),
            one(True, area="medium"),
            one(True, area="large"),
            one(False, dets=d[0]),
            one(False, dets=d[1]),
            one(False, dets=d[2]),
            one(False, area="small"),
            one(False, area="medium"),
            one(False, area="large"),
        ]
    )


def evaluate(
    gt: GtBoxes, dt: DtBoxes, n_images: int, n_categories: int, params: CocoParams | None = None
) -> CocoEvaluation:
    """The whole of ``COCOeval.evaluate(); accumulate(); summarize()`` for bounding boxes."""
    p = params or CocoParams()
    m = match(
        gt,
        dt,
        n_images,
        n_categories,
        iou_thrs=p.iou_thrs,
        area_rngs=p.area_rngs,
        max_det=max(p.max_dets),
    )
    precision, recall = accumulate(m, p)
    return CocoEvaluation(precision, recall, summarize(precision, recall, p), m, p)


def ap_at(
    m: Matches, params: CocoParams, iou_index: int, weights: IntArray | None = None
) -> float | None:
    """AP at one IoU threshold (area ``all``, most detections), optionally on weighted images;
    None when no ground truth counts."""
    precision, _ = accumulate(
        m, params, weights, thresholds=[iou_index], areas=[0], max_dets=[len(params.max_dets) - 1]
    )
    value = _mean_defined(precision)
    return None if value == -1 else value
