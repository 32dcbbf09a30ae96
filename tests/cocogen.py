"""Seeded generators of COCO ground truth and results with the edge cases that matter, and
pycocotools (the reference) run on them quietly. Test helpers, not tests."""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

Doc = dict[str, Any]


@dataclass(frozen=True)
class Shape:
    """What a generated dataset contains."""

    images: int = 20
    max_gt: int = 8
    crowd: float = 0.08
    """Chance that a ground-truth object is a crowd region."""
    ties: bool = True
    """Scores rounded to one decimal, so many tie across and within images."""
    many: bool = False
    """One image gets 150 detections of one category (the 100-per-image cut, maxDets)."""
    zero_id: bool = False
    """Annotation ids start at 0 (pycocotools treats a match to id 0 as none)."""
    no_dets: float = 0.15
    """Chance that an image gets no detections at all."""
    grid: float = 0.0
    """When > 0, every coordinate is rounded to this step: boxes on a pixel grid tie in IoU."""


def make_dataset(seed: int, shape: Shape = Shape()) -> tuple[Doc, list[Doc]]:
    """A ground-truth document and a results list.

    Covers: images without ground truth and without detections, ids out of order, a category
    with ground truth but no detections (3) and one listed without ground truth (7), detections
    of a category the ground truth does not list (9), crowd regions, tiny boxes (< 4 px), area
    fields that differ from w·h, duplicate detections, objects annotated twice (tied IoUs), tied
    scores, boxes poking out of the image."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 100_000), size=shape.images, replace=False)
    images = [
        {"id": int(i), "file_name": f"{int(i)}.jpg", "width": 640, "height": 480} for i in ids
    ]
    rng.shuffle(images)
    categories = [{"id": c, "name": f"c{c}"} for c in (7, 1, 2, 3)]
    anns: list[Doc] = []
    dets: list[Doc] = []
    next_id = 0 if shape.zero_id else 1
    for im in images:
        n_gt = int(rng.integers(0, shape.max_gt + 1)) if rng.random() > 0.1 else 0
        boxes = []
        for _ in range(n_gt):
            size = float(np.exp(rng.uniform(np.log(1.5), np.log(300))))
            w, h = size * rng.uniform(0.5, 2.0), size * rng.uniform(0.5, 1.5)
            x, y = rng.uniform(-10, 620), rng.uniform(-10, 460)
            crowd = rng.random() < shape.crowd
            if crowd:
                w, h = w * 2 + 40, h * 2 + 40
            cat = int(rng.choice([1, 1, 2, 3]))
            area = w * h * (rng.uniform(0.5, 1.1) if rng.random() < 0.5 else 1.0)
            anns.append(
                {
                    "id": next_id,
                    "image_id": im["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": int(crowd),
                    "register_id": f"SB-{next_id % 7:04d}",
                }
            )
            next_id += 1
            boxes.append((x, y, w, h, cat, crowd))
            if rng.random() < 0.05:  # the same object annotated twice: IoUs tie across GT
                anns.append(dict(anns[-1], id=next_id, bbox=[x, y, w, h]))
                next_id += 1
        if shape.grid > 0 and rng.random() < 0.4:
            # Twins: detection A lies exactly between two objects (equal IoU: pycocotools takes
            # the one later in the file); detection B, scored lower, fits one of them exactly.
            x, y, d = float(rng.integers(0, 500)), float(rng.integers(0, 400)), 8.0
            twins = [[x, y, 64.0, 48.0], [x + d, y, 64.0, 48.0]]
            for box in twins:
                anns.append(
                    {
                        "id": next_id,
                        "image_id": im["id"],
                        "category_id": 2,
                        "bbox": box,
                        "area": 64.0 * 48.0,
                        "iscrowd": 0,
                    }
                )
                next_id += 1
            dets.append(_det(rng, im["id"], 2, [x + d / 2, y, 64.0, 48.0], False) | {"score": 0.9})
            fit = twins[int(rng.integers(0, 2))]
            dets.append(_det(rng, im["id"], 2, list(fit), False) | {"score": 0.8})
        if rng.random() < shape.no_dets:
            continue
        for x, y, w, h, cat, crowd in boxes:
            if cat == 3:  # a category with ground truth and never a detection
                continue
            copies = 3 if crowd else 1
            for _ in range(copies):
                if rng.random() > 0.75:
                    continue
                jit = rng.normal(0, 0.12, 4) * [w, h, w, h]
                if crowd:  # a small box inside the crowd region
                    bw, bh = w / 4, h / 4
                    box = [x + rng.uniform(0, w - bw), y + rng.uniform(0, h - bh), bw, bh]
                else:
                    box = [x + jit[0], y + jit[1], max(w + jit[2], 0.3), max(h + jit[3], 0.3)]
                dcat = cat if rng.random() > 0.1 else int(rng.choice([1, 2, 7, 9]))
                dets.append(_det(rng, im["id"], dcat, box, shape.ties))
                if rng.random() < 0.1:  # a duplicate of the same detection
                    dets.append(dict(dets[-1], bbox=list(dets[-1]["bbox"])))
        for _ in range(int(rng.integers(0, 4))):  # false positives
            size = float(np.exp(rng.uniform(np.log(2), np.log(200))))
            box = [rng.uniform(0, 600), rng.uniform(0, 440), size, size * rng.uniform(0.5, 2)]
            dets.append(_det(rng, im["id"], int(rng.choice([1, 2, 7, 9])), box, shape.ties))
    if shape.many and images:
        im = images[0]
        for _ in range(150):
            box = [rng.uniform(0, 600), rng.uniform(0, 440), rng.uniform(5, 80), rng.uniform(5, 80)]
            dets.append(_det(rng, im["id"], 1, box, shape.ties))
        for _ in range(6):
            x, y = rng.uniform(0, 500), rng.uniform(0, 400)
            anns.append(
                {
                    "id": next_id,
                    "image_id": im["id"],
                    "category_id": 1,
                    "bbox": [x, y, 60.0, 50.0],
                    "area": 3000.0,
                    "iscrowd": 0,
                }
            )
            dets.append(_det(rng, im["id"], 1, [x + 2, y + 1, 58.0, 50.0], shape.ties))
            next_id += 1
    if shape.grid > 0:
        for obj in (*anns, *dets):
            obj["bbox"] = [max(round(v / shape.grid), 1) * shape.grid for v in obj["bbox"]]
        for a in anns:
            if a["area"] == 0 or rng.random() < 0.5:
                a["area"] = a["bbox"][2] * a["bbox"][3]
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    gt = {"info": {"seed": seed}, "images": images, "annotations": anns, "categories": categories}
    return gt, dets


def _det(rng: np.random.Generator, image: int, cat: int, box: list[float], ties: bool) -> Doc:
    score = float(rng.uniform(0.01, 1.0))
    if ties:
        score = round(score, 1)
    return {"image_id": image, "category_id": cat, "bbox": [float(v) for v in box], "score": score}


def reference(gt: Doc, dets: list[Doc]) -> COCOeval:
    """pycocotools' COCOeval (bbox, default parameters) after evaluate, accumulate, summarize;
    its printing silenced. ``dets`` must not be empty (pycocotools cannot load none)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def make_scenes(
    seed: int, images: int = 200, miss_at_blur: tuple[float, float] = (0.05, 0.6)
) -> tuple[Doc, list[Doc]]:
    """A scene dataset (one category ``signboard``, image conditions, register ids) and a
    device's answers as a COCO results list. Blur σ is spread evenly over 0–4 px; an object is
    missed with probability ``miss_at_blur[0]`` below 3 px and ``miss_at_blur[1]`` at 3 px or
    more, so recall drops below 0.8 when blur σ ≥ 3 px. Found objects get their register id as
    ``ref`` nine times in ten; a few false positives are added."""
    rng = np.random.default_rng(seed)
    imgs, anns, dets = [], [], []
    for i in range(1, images + 1):
        blur = float(rng.uniform(0.0, 4.0))
        cond = {
            "blur": round(blur, 3),
            "light": round(float(rng.uniform(0.1, 1.0)), 3),
            "size": round(float(rng.uniform(20.0, 120.0)), 1),
        }
        imgs.append(
            {"id": i, "file_name": f"images/{i:06d}.jpg", "width": 1280, "height": 720}
            | {"conditions": cond}
        )
        for _ in range(int(rng.integers(2, 6))):
            w, h = float(rng.uniform(60, 300)), float(rng.uniform(30, 120))
            x, y = float(rng.uniform(0, 1280 - w)), float(rng.uniform(0, 720 - h))
            reg = f"SB-{int(rng.integers(1, 50)):04d}"
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "register_id": reg,
                }
            )
            miss = miss_at_blur[1] if blur >= 3.0 else miss_at_blur[0]
            if rng.random() < miss:
                continue
            jit = rng.normal(0, 0.03, 4) * [w, h, w, h]
            ref = reg if rng.random() < 0.9 else "SB-9999"
            dets.append(
                {
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [x + jit[0], y + jit[1], w + jit[2], h + jit[3]],
                    "score": round(float(rng.uniform(0.5, 1.0)), 3),
                    "ref": ref,
                }
            )
        if rng.random() < 0.2:
            dets.append(
                {
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [float(rng.uniform(0, 1000)), float(rng.uniform(0, 600)), 80.0, 40.0],
                    "score": round(float(rng.uniform(0.5, 0.9)), 3),
                }
            )
    gt = {
        "info": {"seed": seed, "generator": "tests/cocogen"},
        "categories": [{"id": 1, "name": "signboard"}],
        "images": imgs,
        "annotations": anns,
    }
    return gt, dets
