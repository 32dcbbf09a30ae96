"""From matched points to signboard instances: RANSAC homographies, sanity checks, NMS."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from labctl_sim.aibox.matching import Correspondences

FloatArray = npt.NDArray[np.float32]

MAX_ASPECT_CHANGE = 3.0
"""A projected signboard may be at most this much wider or narrower (relative to its height)
than its template: steeper views than ~70° yaw are not read anyway."""
MAX_SIDE_RATIO = 3.0
"""Opposite sides of the projected quad may differ at most this much (perspective)."""
MIN_SPREAD = 0.3
"""Inliers must span this fraction of the template's width: a handful of letters agreeing
with each other is not yet a signboard."""
MIN_SIDE_PX = 6.0
"""Shortest side of a projected signboard worth reporting, in processed-frame pixels."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One signboard found in the processed frame."""

    template: int
    quad: FloatArray
    """The template's corners projected into the frame (4×2, clockwise from top-left)."""
    support: FloatArray
    """The frame points that support it (RANSAC inliers, N×2)."""
    matches: int

    @property
    def inliers(self) -> int:
        """How many frame keypoints support it."""
        return int(self.support.shape[0])

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned box of :attr:`quad`: x, y, width, height."""
        x0, y0 = self.quad.min(axis=0)
        x1, y1 = self.quad.max(axis=0)
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)

    @property
    def score(self) -> float:
        """Confidence in [0, 1): grows with the inlier count, weighted by the inlier share."""
        strength = 1.0 - math.exp(-self.inliers / 25.0)
        return strength * (0.5 + 0.5 * self.inliers / max(self.matches, 1))


def corners(width: int, height: int) -> FloatArray:
    """A template's corners, clockwise from top-left."""
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)


def plausible(quad: FloatArray, template_aspect: float) -> bool:
    """True when ``quad`` could be a real view of a flat rectangular signboard."""
    if not np.isfinite(quad).all():
        return False
    if not cv2.isContourConvex(quad.reshape(-1, 1, 2)):
        return False
    x, y = quad[:, 0].astype(np.float64), quad[:, 1].astype(np.float64)
    signed_area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))
    if signed_area <= 0:  # mirrored: no camera sees a signboard from behind through the wall
        return False
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    top, right, bottom, left = (float(s) for s in sides)
    if min(sides) < MIN_SIDE_PX:
        return False
    if max(top, bottom) > MAX_SIDE_RATIO * min(top, bottom):
        return False
    if max(left, right) > MAX_SIDE_RATIO * min(left, right):
        return False
    aspect = (top + bottom) / (left + right)
    change = aspect / template_aspect
    return 1.0 / MAX_ASPECT_CHANGE <= change <= MAX_ASPECT_CHANGE


def find_instances(
    template: int,
    size: tuple[int, int],
    matches: Correspondences,
    min_inliers: int,
    ransac_px: float,
    max_instances: int = 3,
) -> list[Instance]:
    """Signboards of one template (``size`` = width, height) among its matches.

    After each accepted homography its inliers, and every other match inside its quad, are
    removed and RANSAC runs again, so repeated signboards are found one by one.
    """
    width, height = size
    box = corners(width, height).reshape(-1, 1, 2)
    frame, tmpl = matches.frame, matches.template
    found: list[Instance] = []
    while len(found) < max_instances and frame.shape[0] >= max(min_inliers, 4):
        h, mask = cv2.findHomography(tmpl, frame, cv2.USAC_MAGSAC, ransac_px)
        if h is None or mask is None:
            break
        inl = mask.ravel().astype(bool)
        n_in = int(inl.sum())
        if n_in < min_inliers:
            break
        quad = cv2.perspectiveTransform(box, h).reshape(4, 2).astype(np.float32)
        spread = float(np.ptp(tmpl[inl, 0])) / width
        if not plausible(quad, width / height) or spread < MIN_SPREAD:
            break
        found.append(Instance(template, quad, frame[inl], int(frame.shape[0])))
        rest = ~(inl | inside_convex(quad, frame))
        frame, tmpl = frame[rest], tmpl[rest]
    return found


def inside_convex(quad: FloatArray, points: FloatArray) -> npt.NDArray[np.bool_]:
    """Which ``points`` (N×2) lie inside the convex, positively oriented ``quad``."""
    edges = np.roll(quad, -1, axis=0) - quad
    rel = points[:, None, :] - quad[None, :, :]
    cross = edges[None, :, 0] * rel[:, :, 1] - edges[None, :, 1] * rel[:, :, 0]
    return np.asarray((cross >= 0).all(axis=1))


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over the smaller box: catches a small false box nested in a true one."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return ix * iy / smaller if smaller > 0 else 0.0


def suppress(
    instances: list[Instance], min_inliers: int, max_iou: float = 0.3, max_overlap: float = 0.7
) -> list[Instance]:
    """Greedy non-maximum suppression across templates, best score first: where two templates
    claim the same place, the better-supported identity wins.

    Besides box overlap, an image region belongs to one signboard only: signboards share
    letters, so a weaker template fitted partly on a stronger one's letters is kept only if
    ``min_inliers`` of its inliers lie outside every signboard already kept.
    """
    kept: list[Instance] = []
    for inst in sorted(instances, key=lambda i: i.score, reverse=True):
        b = inst.box
        if any(iou(b, k.box) > max_iou or overlap(b, k.box) > max_overlap for k in kept):
            continue
        own = np.ones(inst.inliers, dtype=bool)
        for k in kept:
            own &= ~inside_convex(k.quad, inst.support)
        if int(own.sum()) >= min_inliers:
            kept.append(inst)
    return kept
