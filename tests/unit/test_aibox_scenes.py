"""The AI box's detectors on the lab's own scene generator (``labctl.scenes``): what a trial
will show. Recall is counted against the COCO ground truth with pycocotools' IoU."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from labctl_sim.aibox import SignDetector, load_register
from pycocotools import mask as coco_mask  # type: ignore[import-untyped]

from labctl.scenes import Dataset, make_dataset

SEED = 3


def recall_by(ds: Dataset, variant: str, condition: str) -> dict[float, float]:
    """Recall (IoU ≥ 0.5 and the right register id) per value of ``condition``."""
    det = SignDetector(load_register(ds.root), variant)
    hits: dict[float, list[int]] = {}
    for im in ds.images:
        image = cv2.imread(str(ds.image_path(im.id)))
        assert image is not None
        found = det.detect(np.asarray(image, np.uint8))
        counts = hits.setdefault(getattr(im.conditions, condition), [0, 0])
        for a in ds.annotations_for(im.id):
            counts[1] += 1
            counts[0] += any(
                f.ref == a.register_id
                and coco_mask.iou([list(f.bbox)], [list(a.bbox)], [0])[0][0] >= 0.5
                for f in found
            )
    return {value: h / n for value, (h, n) in hits.items()}


@pytest.fixture(scope="module")
def blur_sweep(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_dataset(Path(tmp_path_factory.mktemp("blur")) / "ds", 12, SEED, "blur=0,4")


@pytest.fixture(scope="module")
def size_sweep(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_dataset(Path(tmp_path_factory.mktemp("size")) / "ds", 12, SEED, "size=96,40")


@pytest.mark.parametrize(("variant", "clean_min"), [("fast", 0.7), ("robust", 0.9)])
def test_generated_scenes_clean_recall_and_its_fall_with_blur(
    blur_sweep: Dataset, variant: str, clean_min: float
) -> None:
    r = recall_by(blur_sweep, variant, "blur")
    assert r[0.0] >= clean_min, r
    assert r[4.0] <= r[0.0] - 0.3, r


def test_generated_scenes_robust_sees_further_than_fast(size_sweep: Dataset) -> None:
    fast, robust = recall_by(size_sweep, "fast", "size"), recall_by(size_sweep, "robust", "size")
    assert fast[96.0] >= 0.7 and robust[96.0] >= 0.9, (fast, robust)
    assert robust[40.0] >= fast[40.0] + 0.4, (fast, robust)
