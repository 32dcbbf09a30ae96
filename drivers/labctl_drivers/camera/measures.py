"""Condition measures of a frame: brightness, contrast and sharpness, on the full image.

All three are computed on the grey image (OpenCV's BGR→grey conversion, 8 bits):

* brightness: mean grey level (0–255);
* contrast: standard deviation of the grey levels (RMS contrast, in grey levels);
* sharpness: variance of the Laplacian (``cv2.Laplacian`` with the default 3×3 aperture and
  reflect-101 border), the usual focus/blur measure: it falls as blur grows.

Full resolution, no downscaling: on a 1920×1080 frame the three cost about 1.5 ms together
(see ``benchmarks/camera_fps.py``). The Laplacian of an 8-bit image is computed in 16-bit
integers (every value lies within ±4·255, so the numbers are exactly those of ``CV_64F``) and
its variance with ``cv2.meanStdDev`` in double precision: about 3× faster than ``CV_64F`` plus
``numpy.var``, and equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike


@dataclass(frozen=True, slots=True)
class FrameMeasures:
    """Conditions of one frame, in grey levels (see the module docstring)."""

    brightness: float
    """Mean grey level, 0–255."""
    contrast: float
    """Standard deviation of the grey levels (RMS contrast)."""
    sharpness: float
    """Variance of the Laplacian of the grey image, full resolution."""


def grey(image: MatLike) -> MatLike:
    """The grey image measures are taken on (BGR, BGRA or already grey)."""
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def measure(image: MatLike) -> FrameMeasures:
    """Brightness, contrast and sharpness of a BGR (or grey) image."""
    g = grey(image)
    mean, std = cv2.meanStdDev(g)
    # 16-bit is exact for 8-bit input; anything else takes the double-precision path.
    depth = cv2.CV_16S if g.dtype == np.uint8 else cv2.CV_64F
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(g, depth))
    return FrameMeasures(
        brightness=float(mean[0, 0]),
        contrast=float(std[0, 0]),
        sharpness=float(lap_std[0, 0]) ** 2,
    )
