#!/usr/bin/env python3
"""Per-frame processing time of the simulated AI box's two detector variants, on one core.

Renders a dataset with the lab's scene generator (``labctl.scenes``; the ``grid`` plan by
default, as ``trials/signboard-recognition.yaml`` uses) into a temporary directory, enrolls
its register into the ``fast`` and ``robust`` detectors, and times ``detect()`` on every
1280×720 frame with OpenCV limited to one thread (decoding excluded: the box decodes before it
detects). Recall at IoU 0.5
with the right register id is printed beside the times so speed is never read without quality.

Run: ``.venv/bin/python benchmarks/aibox_speed.py [--count 132] [--seed 7] [--conditions grid]``
(``--conditions sample`` draws about three adverse conditions per image: much harder).
Exit status 0 when every variant's 95th percentile is under 0.5 s, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import table, use_repo_imports

use_repo_imports()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from labctl_sim.aibox import SignDetector, load_register  # noqa: E402
from pycocotools import mask as coco_mask  # noqa: E402

from labctl.scenes import make_dataset  # noqa: E402

LIMIT_S = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=132)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--conditions", default="grid")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_dataset(Path(tmp) / "ds", args.count, args.seed, args.conditions)
        frames = [np.asarray(cv2.imread(str(ds.image_path(i.id))), np.uint8) for i in ds.images]
        truth = [ds.annotations_for(i.id) for i in ds.images]
        templates = load_register(ds.root)
    rows, ok = [], True
    for variant in ("fast", "robust"):
        t0 = time.perf_counter()
        det = SignDetector(templates, variant)
        enroll = time.perf_counter() - t0
        times, hits = [], 0
        for frame, gts in zip(frames, truth, strict=True):
            t0 = time.perf_counter()
            found = det.detect(frame)
            times.append(time.perf_counter() - t0)
            hits += sum(
                any(f.ref == a.register_id
                    and coco_mask.iou([list(f.bbox)], [list(a.bbox)], [0])[0][0] >= 0.5
                    for f in found)
                for a in gts
            )
        p95 = float(np.percentile(times, 95))
        ok &= p95 < LIMIT_S
        rows.append([variant, f"{enroll * 1000:.0f}", f"{statistics.mean(times) * 1000:.0f}",
                     f"{statistics.median(times) * 1000:.0f}", f"{p95 * 1000:.0f}",
                     f"{max(times) * 1000:.0f}", f"{hits / sum(map(len, truth)):.2f}"])
    print(f"{len(frames)} frames 1280×720, {len(templates)} signboards, OpenCV on 1 thread")
    print(table(["variant", "enroll ms", "mean ms", "median ms", "p95 ms", "max ms", "recall"],
                rows, [False, True, True, True, True, True, True]))
    print(f"target: p95 < {LIMIT_S * 1000:.0f} ms per frame — {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
