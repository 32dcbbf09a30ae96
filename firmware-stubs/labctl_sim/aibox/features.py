"""Keypoint features of one variant: preprocessing, extraction, and the matching index.

Both variants use ORB keypoints (binary descriptors, FLANN LSH matching) and differ where it
shows in the field:

* ``fast`` — the frame downscaled to 0.6, 1500 keypoints, no contrast normalisation. Quick,
  but small signboards lose their detail in the downscale, and at night ORB's fixed FAST
  threshold stops finding corners in the dim text.
* ``robust`` — the full-resolution frame after CLAHE (local contrast normalisation), 5000
  keypoints, templates enrolled down to a quarter scale. Slower, but CLAHE lifts dark frames
  back above the corner threshold and full resolution keeps distant signboards.

SIFT is available as ``algorithm="sift"`` for comparison; on signboard text it was two to three
times slower than ORB at full resolution and lost more recall to blur, so neither variant uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

Variant = Literal["fast", "robust"]
Image = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float32]

_PAD = 32
_OVERSAMPLE = 4
"""Candidates detected per keypoint kept, when spreading keypoints over a grid."""


@dataclass(frozen=True, slots=True)
class VariantConfig:
    """How one variant finds and matches keypoints, and how strict its geometry is."""

    name: Variant
    frame_scale: float
    """The frame is resized by this factor before feature extraction."""
    frame_features: int
    template_features: int
    template_scales: tuple[float, ...]
    """Extra renderings of each template, for signboards smaller than the keypoint pyramid
    reaches (coordinates are mapped back to the canonical template)."""
    clahe: bool
    ratio: float
    """Lowe's ratio test: best match must be this much closer than the runner-up."""
    min_inliers: int
    ransac_px: float
    """RANSAC reprojection threshold in pixels of the processed frame."""
    knn: int = 6
    """Neighbours fetched per frame keypoint from the union of all templates."""
    max_distance: float = 64.0
    """Farthest descriptor match accepted at all (Hamming bits for ORB, L2 for SIFT)."""
    grid: tuple[int, int] | None = None
    """Spread the frame's keypoint budget over this many cells (columns, rows), or None."""
    algorithm: Literal["orb", "sift"] = "orb"
    """ORB (binary, LSH index) or SIFT (float, k-d tree index): SIFT is there for comparison;
    on signboard text it was slower and lost more to blur than ORB (see the module docs)."""


VARIANTS: dict[str, VariantConfig] = {
    "fast": VariantConfig(
        name="fast", frame_scale=0.6, frame_features=4000, template_features=400,
        template_scales=(1.0, 0.5, 0.25), clahe=False, ratio=0.8, min_inliers=10, ransac_px=3.0,
        grid=(8, 6),
    ),
    "robust": VariantConfig(
        name="robust", frame_scale=1.0, frame_features=12000, template_features=800,
        template_scales=(1.0, 0.5, 0.25), clahe=True, ratio=0.8, min_inliers=8, ransac_px=4.0,
    ),
}


def variant_config(variant: str | VariantConfig) -> VariantConfig:
    """The configuration of ``variant`` (a name or a ready configuration)."""
    if isinstance(variant, VariantConfig):
        return variant
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; use one of {sorted(VARIANTS)}") from None


@dataclass(frozen=True, slots=True)
class Features:
    """Keypoint positions (N×2, float32) and their descriptors (N×D)."""

    points: Points
    descriptors: npt.NDArray[np.generic]

    def __len__(self) -> int:
        return int(self.points.shape[0])


class FeatureExtractor:
    """Preprocesses images and extracts keypoints for one variant. Not thread-safe: one
    extractor per worker thread."""

    def __init__(self, config: VariantConfig) -> None:
        self.config = config
        self._clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)) if config.clahe else None

    def _create(self, n: int) -> cv2.Feature2D:
        if self.config.algorithm == "orb":
            return cv2.ORB.create(nfeatures=n, scaleFactor=1.2, nlevels=8, fastThreshold=12)
        return cv2.SIFT.create(nfeatures=n)

    def gray(self, image: Image, scale: float) -> Image:
        """Greyscale, resized by ``scale`` (area interpolation when shrinking)."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if scale != 1.0:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return np.asarray(gray, dtype=np.uint8)

    def frame(self, image: Image) -> Features:
        """Features of a scene frame, in processed-frame pixels (``config.frame_scale``)."""
        gray = self.gray(image, self.config.frame_scale)
        if self._clahe is not None:
            gray = np.asarray(self._clahe.apply(gray), dtype=np.uint8)
        if self.config.grid is None:
            return self._extract(gray, self.config.frame_features)
        return self._extract_spread(gray, self.config.frame_features, self.config.grid)

    def template(self, image: Image) -> Features:
        """Features of a template at every configured scale, in canonical template pixels."""
        parts = []
        for scale in self.config.template_scales:
            # Padding by replication lets keypoints near the board's edge get a full
            # descriptor patch (ORB skips anything within its 31 px patch of the border).
            gray = cv2.copyMakeBorder(
                self.gray(image, scale), _PAD, _PAD, _PAD, _PAD, cv2.BORDER_REPLICATE
            )
            f = self._extract(np.asarray(gray, np.uint8), self.config.template_features)
            points = (f.points - np.float32(_PAD)) / np.float32(scale)
            parts.append(Features(points.astype(np.float32), f.descriptors))
        return concat(parts)

    def _extract_spread(self, gray: Image, n: int, grid: tuple[int, int]) -> Features:
        """Up to ``n`` keypoints spread over a ``grid`` of cells: each cell keeps its strongest
        ``n / cells``, the rest of the budget goes to the strongest left over. Busy texture
        (windows, railings) would otherwise take the whole budget from the thin strokes of
        signboard lettering."""
        detector = self._create(n * _OVERSAMPLE)
        candidates = detector.detect(gray, None)
        if len(candidates) > n:
            pts = np.array([k.pt for k in candidates], np.float32).reshape(-1, 2)
            response = np.array([k.response for k in candidates], np.float32)
            size = (int(gray.shape[1]), int(gray.shape[0]))
            chosen = np.flatnonzero(spread(pts, response, size, grid, n))
            candidates = tuple(candidates[int(i)] for i in chosen)
        keypoints, descriptors = detector.compute(gray, candidates)
        if descriptors is None or not keypoints:
            return empty(self.config)
        points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
        return Features(points, descriptors)

    def _extract(self, gray: Image, n: int) -> Features:
        keypoints, descriptors = self._create(n).detectAndCompute(gray, None)
        if descriptors is None or not keypoints:
            return empty(self.config)
        points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
        return Features(points, descriptors)


def spread(
    points: Points, response: npt.NDArray[np.float32], size: tuple[int, int],
    grid: tuple[int, int], n: int,
) -> npt.NDArray[np.bool_]:
    """Which of ``points`` (in an image of ``size`` = width, height) to keep: in each of the
    ``grid`` (columns, rows) cells its ``n // cells`` strongest by ``response``, then the
    strongest of the rest until ``n`` are kept."""
    cols, rows = grid
    width, height = size
    cell = (np.minimum(points[:, 1] * rows // height, rows - 1) * cols
            + np.minimum(points[:, 0] * cols // width, cols - 1)).astype(np.intp)
    order = np.lexsort((-response, cell))  # by cell, strongest first within a cell
    starts = np.searchsorted(cell[order], np.arange(cols * rows))
    rank = np.empty(len(order), np.intp)
    rank[order] = np.arange(len(order)) - starts[cell[order]]
    chosen = rank < n // (cols * rows)
    rest = np.flatnonzero(~chosen)
    chosen[rest[np.argsort(-response[rest])[: max(0, n - int(chosen.sum()))]]] = True
    return chosen


def empty(config: VariantConfig) -> Features:
    """No features, with the descriptor shape of ``config``'s algorithm."""
    if config.algorithm == "orb":
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))


def concat(parts: list[Features]) -> Features:
    """All features of ``parts`` as one set (``parts`` must not be empty)."""
    return Features(
        np.concatenate([p.points for p in parts]).astype(np.float32),
        np.concatenate([p.descriptors for p in parts]),
    )
