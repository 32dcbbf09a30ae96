#!/usr/bin/env python3
"""COCO bbox evaluation: the lab's numpy implementation against pycocotools' COCOeval.

Generates a synthetic signboard dataset (default 5,000 images of 1280×720, 3–8 signboards
each, sizes from tiny to large, a few crowd regions) and a device's results (each object found
with probability 0.85 as a noisy box, 0–2 false positives per image, scores rounded to three
decimals so some tie), then in the same run, N times each:

* pycocotools: ``COCO`` index + ``loadRes``, then ``COCOeval(…, "bbox")`` ``evaluate()``,
  ``accumulate()``, ``summarize()`` (its printing silenced);
* labctl: validation of the same documents into arrays (``parse_ground_truth``,
  ``parse_results``), then ``labctl.evaluators.coco.evaluate`` (match, accumulate, summarize);
* labctl, everything ``labctl eval detections`` computes: COCO figures, the operating point,
  200 bootstrap resamples for the intervals of AP50 and recall, a breakdown over 3 conditions.

Prints the median seconds of each, the speedup and the largest difference of the 12 summary
figures (and of the full precision array) from pycocotools. Exit status 0 when the figures
agree to 1e-6 and labctl is faster, 1 otherwise.

Run: ``.venv/bin/python benchmarks/detection_eval.py [--images 5000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from typing import Any

import numpy as np
from _common import load_note, median, table, use_repo_imports

use_repo_imports()

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from labctl.evaluators.coco import STAT_NAMES, evaluate  # noqa: E402
from labctl.evaluators.coco_data import parse_ground_truth, parse_results  # noqa: E402
from labctl.evaluators.detection_accuracy import DetectionAccuracyEvaluator  # noqa: E402

Doc = dict[str, Any]
TOLERANCE = 1e-6


def generate(images: int, seed: int) -> tuple[Doc, list[Doc]]:
    """Ground truth and results as JSON-like documents."""
    rng = np.random.default_rng(seed)
    imgs, anns, dets = [], [], []
    for i in range(1, images + 1):
        cond = {
            "blur": round(float(rng.uniform(0, 4)), 2),
            "light": round(float(rng.uniform(0.1, 1)), 2),
            "size": round(float(rng.uniform(20, 120)), 1),
        }
        imgs.append({"id": i, "width": 1280, "height": 720, "conditions": cond})
        for _ in range(int(rng.integers(3, 9))):
            size = float(np.exp(rng.uniform(np.log(8), np.log(400))))
            w, h = size * rng.uniform(1.5, 3.0), size
            x, y = float(rng.uniform(0, 1280 - w)), float(rng.uniform(0, max(720 - h, 1)))
            crowd = rng.random() < 0.01
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                    "register_id": None if crowd else f"SB-{int(rng.integers(1, 500)):04d}",
                }
            )
            if rng.random() < 0.85 - 0.1 * cond["blur"] / 4:
                j = rng.normal(0, 0.06, 4) * [w, h, w, h]
                dets.append(
                    {
                        "image_id": i,
                        "category_id": 1,
                        "bbox": [x + j[0], y + j[1], max(w + j[2], 1.0), max(h + j[3], 1.0)],
                        "score": round(float(rng.beta(5, 2)), 3),
                        "ref": anns[-1]["register_id"],
                    }
                )
        for _ in range(int(rng.integers(0, 3))):
            w, h = float(rng.uniform(20, 200)), float(rng.uniform(10, 80))
            box = [float(rng.uniform(0, 1280 - w)), float(rng.uniform(0, 720 - h)), w, h]
            score = round(float(rng.beta(2, 4)), 3)
            dets.append({"image_id": i, "category_id": 1, "bbox": box, "score": score})
    gt = {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "signboard"}]}
    return gt, dets


def run_pycocotools(gt: Doc, dets: list[Doc]) -> tuple[float, COCOeval]:
    """Seconds for index + loadRes + evaluate + accumulate + summarize (copies made before)."""
    gt_copy, dets_copy = copy.deepcopy(gt), copy.deepcopy(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = gt_copy
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets_copy)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return time.perf_counter() - t0, ev


def run_labctl(gt: Doc, dets: list[Doc]) -> tuple[float, float, Any]:
    """Seconds to validate into arrays, and seconds to evaluate."""
    t0 = time.perf_counter()
    g = parse_ground_truth(gt, "gt")
    d = parse_results(dets, g, "dt")
    t1 = time.perf_counter()
    ev = evaluate(g.boxes, d.boxes, g.n_images, g.n_categories)
    return t1 - t0, time.perf_counter() - t1, ev


def run_scoring(gt: Doc, dets: list[Doc]) -> float:
    """Seconds for everything ``labctl eval detections`` computes (after loading)."""
    g = parse_ground_truth(gt, "gt")
    d = parse_results(dets, g, "dt")
    t0 = time.perf_counter()
    ev = DetectionAccuracyEvaluator(g, conditions=["blur", "light", "size"], bootstrap=200)
    ev.score_results("device", d)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    started = load_note()
    gt, dets = generate(args.images, args.seed)
    ref_s, ours_load, ours_eval, full = [], [], [], []
    stats_diff = prec_diff = 0.0
    for n in range(1, args.runs + 1):
        print(f"run {n}/{args.runs} …", file=sys.stderr, flush=True)
        s, ref = run_pycocotools(gt, dets)
        ref_s.append(s)
        load_s, eval_s, ours = run_labctl(gt, dets)
        ours_load.append(load_s)
        ours_eval.append(eval_s)
        full.append(run_scoring(gt, dets))
        stats_diff = max(stats_diff, float(np.abs(ours.stats - ref.stats).max()))
        prec_diff = max(prec_diff, float(np.abs(ours.precision - ref.eval["precision"]).max()))

    ref_m, load_m, eval_m = median(ref_s), median(ours_load), median(ours_eval)
    full_m = median(full)
    assert ref_m is not None and load_m is not None and eval_m is not None and full_m is not None
    print()
    print(
        f"Workload: {args.images:,} images, {len(gt['annotations']):,} objects, "
        f"{len(dets):,} detections (seed {args.seed}); median of {args.runs} runs"
    )
    print(f"Machine: {started} at start; {load_note()} at end")
    print()
    rows = [
        ["pycocotools COCO+loadRes+evaluate+accumulate+summarize", f"{ref_m:.3f}", "1.0×"],
        ["labctl evaluate (match+accumulate+summarize)", f"{eval_m:.3f}", f"{ref_m / eval_m:.1f}×"],
        [
            "labctl validate+evaluate",
            f"{load_m + eval_m:.3f}",
            f"{ref_m / (load_m + eval_m):.1f}×",
        ],
        ["labctl eval detections scoring (+200 bootstrap, 3 conditions)", f"{full_m:.3f}", ""],
    ]
    print(table(["what", "seconds", "speedup"], rows, [False, True, True]))
    print()
    print(f"max |Δ| over the 12 stats ({', '.join(STAT_NAMES)}): {stats_diff:.3g}")
    print(f"max |Δ| over the precision array (T×R×K×A×M): {prec_diff:.3g}")
    ok = stats_diff <= TOLERANCE and prec_diff <= TOLERANCE and eval_m < ref_m
    print(
        f"verdict: {'pass' if ok else 'FAIL'} (agreement ≤ {TOLERANCE:g}, faster than pycocotools)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
