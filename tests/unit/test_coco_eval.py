"""The lab's COCO bbox evaluation against pycocotools, the operating point against a plain
hand computation, and the bootstrap."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from labctl.evaluators.coco import STAT_NAMES, CocoParams, accumulate, ap_at, box_iou, evaluate
from labctl.evaluators.coco_data import CocoGroundTruth, parse_ground_truth, parse_results
from labctl.evaluators.operating_point import bootstrap_ci, operating_point
from tests.cocogen import Doc, Shape, make_dataset, make_scenes, reference

SHAPES = {
    "mixed": Shape(),
    "crowds-many-dets-zero-id": Shape(many=True, zero_id=True, crowd=0.25),
    "untied-small": Shape(ties=False, images=6),
    "pixel-grid-twins": Shape(grid=4.0, max_gt=14, images=12),
    "sparse": Shape(images=30, max_gt=2, no_dets=0.5),
}


def _ours(gt: Doc, dets: list[Doc]) -> tuple[CocoGroundTruth, np.ndarray, np.ndarray, np.ndarray]:
    g = parse_ground_truth(gt, "gt.json")
    d = parse_results(dets, g, "dt.json")
    ev = evaluate(g.boxes, d.boxes, g.n_images, g.n_categories)
    return g, ev.stats, ev.precision, ev.recall


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_equals_pycocotools(shape: str, seed: int) -> None:
    gt, dets = make_dataset(seed, SHAPES[shape])
    assert dets, "the generator gives detections"
    ref = reference(gt, dets)
    _, stats, precision, recall = _ours(gt, dets)
    np.testing.assert_allclose(stats, ref.stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(precision, ref.eval["precision"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(recall, ref.eval["recall"], rtol=0, atol=1e-6)


def test_generated_files_hold_the_edge_cases() -> None:
    """The cases above are only meaningful if the generator produces what they claim."""
    gt, dets = make_dataset(1, SHAPES["crowds-many-dets-zero-id"])
    g = parse_ground_truth(gt, "gt.json")
    with_gt = set(g.boxes.image.tolist())
    with_dt = {d["image_id"] for d in dets}
    ids = {im["id"] for im in gt["images"]}
    assert ids - {im["id"] for im in gt["images"] if im["id"] in with_dt}  # images without dets
    assert len(with_gt) < g.n_images  # images without ground truth
    assert g.boxes.crowd.any()
    assert (g.boxes.ann_id == 0).any()
    assert (g.boxes.bbox[:, 2] * g.boxes.bbox[:, 3] < 16).any()  # tiny boxes
    assert not np.allclose(g.boxes.area, g.boxes.bbox[:, 2] * g.boxes.bbox[:, 3])
    per_image = np.bincount([d["image_id"] for d in dets])
    assert per_image.max() > 100  # the 100-per-image cut matters
    scores = [d["score"] for d in dets]
    assert len(set(scores)) < len(scores) / 10  # many ties
    assert {d["category_id"] for d in dets} >= {1, 2, 7, 9}  # 7: no GT; 9: not a category
    assert 3 in {a["category_id"] for a in gt["annotations"]}
    assert 3 not in {d["category_id"] for d in dets}
    boxes = [tuple(d["bbox"]) for d in dets]
    assert len(set(boxes)) < len(boxes)  # duplicate detections


def test_a_large_file_equals_pycocotools() -> None:
    gt, dets = make_dataset(99, Shape(images=400, crowd=0.05))
    ref = reference(gt, dets)
    _, stats, _, _ = _ours(gt, dets)
    np.testing.assert_allclose(stats, ref.stats, rtol=0, atol=1e-6)


def test_no_detections_equals_pycocotools() -> None:
    """pycocotools cannot load an empty results list; a single detection of a category the
    ground truth does not list is evaluated as no detection at all."""
    gt, _ = make_dataset(5, Shape())
    only_unknown = [{"image_id": gt["images"][0]["id"], "category_id": 9, "bbox": [1, 1, 5, 5]}]
    only_unknown[0]["score"] = 0.5
    ref = reference(gt, only_unknown)
    g = parse_ground_truth(gt, "gt.json")
    none = parse_results([], g, "dt.json")
    ours = evaluate(g.boxes, none.boxes, g.n_images, g.n_categories)
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=1e-6)
    assert ours.stat("ap") == 0.0
    assert ours.stat("ap_small") in (0.0, None)


def test_stats_by_name() -> None:
    gt, dets = make_dataset(2, Shape())
    g = parse_ground_truth(gt, "gt.json")
    ev = evaluate(g.boxes, parse_results(dets, g, "dt.json").boxes, g.n_images, g.n_categories)
    ref = reference(gt, dets)
    for i, name in enumerate(STAT_NAMES):
        value = ev.stat(name)
        assert (value is None and ref.stats[i] == -1) or value == pytest.approx(ref.stats[i])


def test_box_iou_is_pycocotools_bbiou_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    det = np.column_stack([rng.uniform(0, 50, (500, 2)), rng.uniform(0.1, 40, (500, 2))])
    gt = np.column_stack([rng.uniform(0, 50, (500, 2)), rng.uniform(0.1, 40, (500, 2))])
    crowd = rng.random(500) < 0.3
    ours = box_iou(det, gt, crowd)
    ref = np.array(
        [
            mask_utils.iou(det[i : i + 1].tolist(), gt[i : i + 1].tolist(), [int(crowd[i])])[0, 0]
            for i in range(500)
        ]
    )
    assert (ours > 0).sum() > 100
    assert np.array_equal(ours, ref)


# --- operating point --------------------------------------------------------------------------


def _iou(a: list[float], b: list[float], crowd: bool) -> float:
    """Plain IoU, written out independently of the implementation under test."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - inter
    return inter / union


def _by_hand(gt: Doc, dets: list[Doc], thr: float = 0.5) -> dict[str, int]:
    """Greedy matching per image and category, highest score first: the best free regular
    object, else a crowd region (then ignored); counts as a reviewer would tally them."""
    cats = {c["id"] for c in gt["categories"]}
    out = dict(tp=0, fp=0, positives=0, id_correct=0, id_total=0)
    for a in gt["annotations"]:
        if not a["iscrowd"]:
            out["positives"] += 1
            out["id_total"] += a.get("register_id") is not None
    for im in gt["images"]:
        for c in cats:
            objs = [a for a in gt["annotations"] if a["image_id"] == im["id"]]
            objs = [a for a in objs if a["category_id"] == c]
            ds = [d for d in dets if d["image_id"] == im["id"] and d["category_id"] == c]
            ds = sorted(ds, key=lambda d: -d["score"])  # sorted() is stable
            taken: set[int] = set()
            for d in ds:
                regular = [
                    (_iou(d["bbox"], a["bbox"], False), a["id"], a)
                    for a in objs
                    if not a["iscrowd"] and a["id"] not in taken
                ]
                regular = [r for r in regular if r[0] >= thr]
                if regular:
                    best = max(regular, key=lambda r: r[0])[2]
                    taken.add(best["id"])
                    out["tp"] += 1
                    reg = best.get("register_id")
                    out["id_correct"] += reg is not None and d.get("ref") == reg
                elif not any(_iou(d["bbox"], a["bbox"], True) >= thr for a in objs if a["iscrowd"]):
                    out["fp"] += 1
    return out


def test_operating_point_by_hand_on_a_small_case() -> None:
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "signboard"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 0, "register_id": "SB-1"},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100,
             "iscrowd": 0, "register_id": "SB-2"},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 0, "register_id": "SB-3"},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [100, 100, 80, 80], "area": 6400,
             "iscrowd": 1},
        ],
    }  # fmt: skip
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9, "ref": "SB-1"},
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8, "ref": "SB-1"},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 9], "score": 0.7, "ref": "SB-7"},
        {"image_id": 2, "category_id": 1, "bbox": [110, 110, 20, 20], "score": 0.6},
        {"image_id": 2, "category_id": 1, "bbox": [300, 300, 20, 20], "score": 0.5},
    ]
    g = parse_ground_truth(gt, "gt.json")
    d = parse_results(dets, g, "dt.json")
    t = operating_point(g.boxes, g.register_id, d.boxes, d.ref, 2, 1).total()
    # tp: det 1 → obj 1, det 3 → obj 2; fp: det 2 (duplicate), det 5; det 4 lies in the crowd.
    assert (t.tp, t.fp, t.positives, t.fn) == (2, 2, 3, 1)
    assert t.precision == pytest.approx(0.5)
    assert t.recall == pytest.approx(2 / 3)
    assert t.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert t.id_accuracy == pytest.approx(1 / 3)  # only SB-1 named right


@pytest.mark.parametrize("seed", range(6))
def test_operating_point_equals_the_hand_count(seed: int) -> None:
    gt, dets = make_dataset(seed, Shape(images=12, crowd=0.2))
    g = parse_ground_truth(gt, "gt.json")
    d = parse_results(dets, g, "dt.json")
    ref_dets = [x for x in dets if x["category_id"] in {1, 2, 3, 7}]
    for i, x in enumerate(ref_dets):
        x["ref"] = f"SB-{i % 7:04d}"
    d = parse_results(ref_dets, g, "dt.json")
    t = operating_point(g.boxes, g.register_id, d.boxes, d.ref, g.n_images, g.n_categories)
    hand = _by_hand(gt, ref_dets)
    got = dict(
        tp=t.total().tp,
        fp=t.total().fp,
        positives=t.total().positives,
        id_correct=t.total().id_correct,
        id_total=t.total().id_total,
    )
    assert got == hand
    assert hand["tp"] > 0 and hand["fp"] > 0


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_brackets_the_estimate() -> None:
    gt, dets = make_scenes(7, images=150)
    g = parse_ground_truth(gt, "gt.json")
    d = parse_results(dets, g, "dt.json")
    params = CocoParams()
    ev = evaluate(g.boxes, d.boxes, g.n_images, g.n_categories, params)
    op = operating_point(g.boxes, g.register_id, d.boxes, d.ref, g.n_images, g.n_categories)

    def stat(w: np.ndarray) -> list[float | None]:
        return [ap_at(ev.matches, params, 0, w), op.total(w).recall]

    a = bootstrap_ci(g.n_images, stat, 200, seed=11)
    b = bootstrap_ci(g.n_images, stat, 200, seed=11)
    c = bootstrap_ci(g.n_images, stat, 200, seed=12)
    assert a == b
    assert a != c
    ap50, recall = ev.stat("ap50"), op.total().recall
    assert ap50 is not None and recall is not None
    (lo_ap, hi_ap), (lo_r, hi_r) = a[0], a[1]  # type: ignore[misc]
    assert lo_ap < ap50 < hi_ap
    assert lo_r < recall < hi_r
    assert 0.01 < hi_r - lo_r < 0.2  # a real interval for 150 images, not a degenerate one


def test_weighted_images_equal_pycocotools_on_the_resampled_file() -> None:
    """Weights evaluate a resample as if each image appeared that many times: the same AP as
    pycocotools on a file holding those copies (untied scores, so order is unambiguous)."""
    gt, dets = make_dataset(4, Shape(ties=False, images=15, crowd=0.1))
    g = parse_ground_truth(gt, "gt.json")
    d = parse_results(dets, g, "dt.json")
    params = CocoParams()
    ev = evaluate(g.boxes, d.boxes, g.n_images, g.n_categories, params)
    weights = np.random.default_rng(0).integers(0, 3, g.n_images)
    precision, recall = accumulate(ev.matches, params, weights)

    copies: Doc = {"images": [], "annotations": [], "categories": gt["categories"]}
    res: list[Doc] = []
    for idx, image_id in enumerate(g.image_ids.tolist()):
        for c in range(int(weights[idx])):
            new = image_id * 10 + c
            copies["images"].append({"id": new})
            for a in gt["annotations"]:
                if a["image_id"] == image_id:
                    copies["annotations"].append(
                        dict(copy.deepcopy(a), image_id=new, id=len(copies["annotations"]) + 1)
                    )
            res += [dict(copy.deepcopy(x), image_id=new) for x in dets if x["image_id"] == image_id]
    ref = reference(copies, res)
    np.testing.assert_allclose(precision, ref.eval["precision"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(recall, ref.eval["recall"], rtol=0, atol=1e-9)
