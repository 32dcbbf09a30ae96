"""The AI box's signboard detector on scenes with known truth.

Scenes are built here (``tests/aibox_synth.py``: templates warped at known corners into a
textured facade), so every expectation is about the algorithm, not about a generator. IoU is
computed with pycocotools, independently of the detector's own geometry code.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from labctl_sim.aibox import RegisterError, SignDetector, Template, load_register
from labctl_sim.aibox.features import spread
from labctl_sim.aibox.geometry import Instance, plausible, suppress
from pycocotools import mask as coco_mask  # type: ignore[import-untyped]

from tests import aibox_synth as synth

VARIANTS = ["fast", "robust"]
SEEDS = range(6)


def coco_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(coco_mask.iou([list(a)], [list(b)], [0])[0][0])


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Template]]:
    root = tmp_path_factory.mktemp("register")
    synth.write_register(root, 10)
    return root, load_register(root)


@pytest.fixture(scope="module")
def detectors(register: tuple[Path, list[Template]]) -> dict[str, SignDetector]:
    return {v: SignDetector(register[1], v) for v in VARIANTS}


@pytest.fixture(scope="module")
def images(register: tuple[Path, list[Template]]) -> list[np.ndarray]:
    return [t.image for t in register[1]]


def recall(det: SignDetector, refs: list[str], scenes: list[synth.Scene], **degrade: float) -> (
    float
):
    """Share of true signboards found with IoU ≥ 0.5 and the right register id."""
    hits = total = 0
    for k, sc in enumerate(scenes):
        found = det.detect(synth.degrade(sc.image, k, **degrade))
        for t, box in sc.truth:
            total += 1
            hits += any(f.ref == refs[t] and coco_iou(f.bbox, box) >= 0.5 for f in found)
    return hits / total


def test_register_loads_every_template(register: tuple[Path, list[Template]]) -> None:
    _, templates = register
    assert [t.ref for t in templates] == [f"SB-{i:04d}" for i in range(1, 11)]
    assert all(t.image.shape == (160, 480, 3) for t in templates)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: (d / "register.json").unlink(), "cannot read"),
        (lambda d: (d / "register.json").write_text('{"schema": "x"}'), "not a labctl-register"),
        (lambda d: _edit(d, template="../outside.png"), "outside"),
        (lambda d: (d / "register" / "SB-0001.png").write_text("no png"), "not a readable image"),
        (lambda d: _edit(d, id="SB-0002"), "repeats"),
    ],
    ids=["missing", "schema", "escape", "unreadable", "duplicate"],
)
def test_bad_registers_are_refused_in_words(tmp_path: Path, mutate: object, words: str) -> None:
    synth.write_register(tmp_path, 2)
    mutate(tmp_path)  # type: ignore[operator]
    with pytest.raises(RegisterError, match=words):
        load_register(tmp_path)


def _edit(root: Path, **first: str) -> None:
    doc = json.loads((root / "register.json").read_text())
    doc["signboards"][0].update(first)
    (root / "register.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("variant", VARIANTS)
def test_clean_scenes_find_every_signboard_and_name_it(
    variant: str, detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    det = detectors[variant]
    for seed in SEEDS:
        sc = synth.scene(images, seed, height_px=100)
        found = det.detect(sc.image)
        assert len(found) == len(sc.truth), (seed, found, sc.truth)
        for t, box in sc.truth:
            best = max(found, key=lambda f: coco_iou(f.bbox, box))
            assert coco_iou(best.bbox, box) >= 0.7, (seed, best, box)
            assert best.ref == det.refs[t]
        for f in found:
            x, y, w, h = f.bbox
            assert 0 < f.score <= 1
            assert x >= 0 and y >= 0 and x + w <= 1280 and y + h <= 720


@pytest.mark.parametrize("variant", VARIANTS)
def test_recall_falls_with_strong_blur_and_darkness(
    variant: str, detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    det = detectors[variant]
    scenes = [synth.scene(images, s, height_px=90) for s in SEEDS]
    clean = recall(det, det.refs, scenes)
    blurred = recall(det, det.refs, scenes, blur=5.0)
    dark = recall(det, det.refs, scenes, light=0.03, noise=6.0)
    assert clean >= 0.9
    assert blurred <= clean - 0.5, (clean, blurred)
    assert dark <= clean - 0.5, (clean, dark)


def test_robust_beats_fast_at_night_and_at_distance(
    detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    near = [synth.scene(images, s, height_px=90) for s in SEEDS]
    far = [synth.scene(images, s, height_px=55) for s in SEEDS]

    def hard(v: str) -> float:
        det = detectors[v]
        night = recall(det, det.refs, near, light=0.08, noise=4.0)
        return (night + recall(det, det.refs, far)) / 2

    fast, robust = hard("fast"), hard("robust")
    assert robust >= fast + 0.3, (fast, robust)


def test_a_repeated_signboard_is_found_twice(
    detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    img = synth.facade(np.random.default_rng(3))
    quads = [[[50, 100], [380, 110], [380, 210], [50, 220]],
             [[700, 400], [1050, 380], [1050, 500], [700, 490]]]
    boxes = [synth.paste(img, images[2], np.array(q, np.float32)) for q in quads]
    for det in detectors.values():
        found = det.detect(img)
        assert sorted(f.ref for f in found) == ["SB-0003", "SB-0003"]
        for box in boxes:
            assert max(coco_iou(f.bbox, box) for f in found) >= 0.7


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_half_hidden_signboard_still_gets_its_whole_box(
    variant: str, detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    img = synth.facade(np.random.default_rng(5))
    box = synth.paste(img, images[4], np.array([[300, 200], [700, 190], [700, 330], [300, 335]],
                                               np.float32))
    cv2.rectangle(img, (520, 150), (760, 380), (40, 40, 40), -1)  # a lorry in front
    found = detectors[variant].detect(img)
    assert [f.ref for f in found] == ["SB-0005"]
    assert coco_iou(found[0].bbox, box) >= 0.7


def test_scenes_without_signboards_give_nothing(detectors: dict[str, SignDetector]) -> None:
    flat = np.full((720, 1280, 3), 128, np.uint8)
    for det in detectors.values():
        assert det.detect(flat) == []
        for seed in range(3):
            assert det.detect(synth.facade(np.random.default_rng(100 + seed))) == []


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_720p_frame_takes_well_under_half_a_second_on_one_core(
    variant: str, detectors: dict[str, SignDetector], images: list[np.ndarray]
) -> None:
    frames = [synth.degrade(synth.scene(images, s).image, s, noise=8.0) for s in range(3)]
    times = []
    for f in frames:
        t0 = time.perf_counter()
        detectors[variant].detect(f)
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.5, times


def test_implausible_quads_are_rejected() -> None:
    good = np.array([[0, 0], [300, 10], [300, 90], [0, 100]], np.float32)
    assert plausible(good, 3.0)
    assert not plausible(good[::-1].copy(), 3.0)  # mirrored
    assert not plausible(good[[0, 2, 1, 3]].copy(), 3.0)  # self-crossing
    assert not plausible(np.array([[0, 0], [30, 0], [30, 100], [0, 100]], np.float32), 3.0)
    assert not plausible(np.array([[0, 0], [300, 0], [300, 3], [0, 3]], np.float32), 3.0)


def test_suppression_gives_a_region_to_its_best_supported_signboard() -> None:
    def inst(t: int, quad: list[list[int]], support: list[list[int]]) -> Instance:
        return Instance(t, np.array(quad, np.float32), np.array(support, np.float32), 40)

    strong = inst(0, [[100, 100], [400, 100], [400, 200], [100, 200]],
                  [[150 + 5 * i, 150] for i in range(40)])
    # Fitted on the strong one's letters, spilling to the left: its support is not its own.
    parasite = inst(1, [[0, 90], [330, 90], [330, 210], [0, 210]],
                    [[300 + 2 * i, 150] for i in range(10)] + [[50, 150]] * 2)
    elsewhere = inst(2, [[600, 400], [900, 400], [900, 500], [600, 500]],
                     [[650 + 5 * i, 450] for i in range(12)])
    kept = suppress([parasite, elsewhere, strong], min_inliers=8)
    assert [k.template for k in kept] == [0, 2]


def test_keypoints_are_spread_over_the_grid_before_the_strongest_take_the_rest() -> None:
    rng = np.random.default_rng(0)
    busy = rng.uniform(0, 50, (100, 2))  # top-left cell: 100 strong corners (a window grid)
    quiet = np.array([[150, 20], [160, 30], [20, 150], [30, 160], [150, 150], [160, 160]])
    points = np.vstack([busy, quiet]).astype(np.float32)
    response = np.concatenate([rng.uniform(50, 100, 100), [1, 2, 3, 4, 5, 6]]).astype(np.float32)
    keep = spread(points, response, (200, 200), (2, 2), 10)
    assert keep.sum() == 10
    assert keep[100:].all()  # quota 2 per cell: every quiet corner survives
    top_busy = np.argsort(-response[:100])[:4]
    assert set(np.flatnonzero(keep[:100])) == set(top_busy)
