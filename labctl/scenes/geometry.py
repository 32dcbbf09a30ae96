"""Perspective geometry of a signboard: its quad in the image and the template→image warp.

Coordinates are continuous image coordinates as COCO uses them: pixel (col j, row i) covers
[j, j+1) × [i, i+1), so its centre is (j + 0.5, i + 0.5). OpenCV's warps index pixel centres
by integers; :func:`roi_warp` converts between the two.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

Quad = NDArray[np.float64]  # (4, 2): top-left, top-right, bottom-right, bottom-left
Box = tuple[float, float, float, float]  # COCO x, y, w, h


def perspective_quad(aspect: float, height_px: float, yaw_deg: float, focal_px: float) -> Quad:
    """The corners of a signboard turned by ``yaw_deg`` about its vertical axis, centred at 0.

    A pinhole camera with focal length ``focal_px`` looks at a board of height 1 and width
    ``aspect``; the board's distance is chosen so that its vertical centre line is
    ``height_px`` tall in the image. The nearer edge comes out taller than the farther one.
    """
    theta = math.radians(yaw_deg)
    z0 = focal_px / height_px
    half_w = aspect / 2
    if z0 - half_w * abs(math.sin(theta)) <= 0.1 * z0:
        raise ValueError(
            f"a {height_px:.0f} px signboard at {yaw_deg:.0f}° is too close to the camera"
        )
    corners = []
    for x, y in ((-half_w, -0.5), (half_w, -0.5), (half_w, 0.5), (-half_w, 0.5)):
        z = z0 + x * math.sin(theta)
        corners.append((focal_px * x * math.cos(theta) / z, focal_px * y / z))
    return np.array(corners, np.float64)


def quad_box(quad: Quad, width: int, height: int) -> Box:
    """The axis-aligned box of ``quad`` clipped to a ``width``×``height`` image (COCO x,y,w,h)."""
    x0 = float(np.clip(quad[:, 0].min(), 0, width))
    x1 = float(np.clip(quad[:, 0].max(), 0, width))
    y0 = float(np.clip(quad[:, 1].min(), 0, height))
    y1 = float(np.clip(quad[:, 1].max(), 0, height))
    return (x0, y0, x1 - x0, y1 - y0)


def roi_of(quad: Quad, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x0, y0, x1, y1)`` covering ``quad`` plus a 1 px margin."""
    x0 = max(0, math.floor(quad[:, 0].min()) - 1)
    y0 = max(0, math.floor(quad[:, 1].min()) - 1)
    x1 = min(width, math.ceil(quad[:, 0].max()) + 1)
    y1 = min(height, math.ceil(quad[:, 1].max()) + 1)
    return x0, y0, x1, y1


def roi_warp(src_w: int, src_h: int, quad: Quad, origin: tuple[int, int]) -> NDArray[np.float64]:
    """The OpenCV homography taking a ``src_w``×``src_h`` image onto ``quad``.

    The result maps source pixel indices to pixel indices of a region whose top-left pixel is
    ``origin`` in the image, for ``cv2.warpPerspective`` into that region only.
    """
    src = np.array([[0, 0], [src_w, 0], [src_w, src_h], [0, src_h]], np.float32)
    h = cv2.getPerspectiveTransform(src, quad.astype(np.float32)).astype(np.float64)
    to_continuous = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    ox, oy = origin
    to_roi_index = np.array([[1, 0, -ox - 0.5], [0, 1, -oy - 0.5], [0, 0, 1]], np.float64)
    out: NDArray[np.float64] = to_roi_index @ h @ to_continuous
    return out
