"""Image conditions, applied in the order light travels: the scene (occluders, light, rain),
then the lens (blur), then the sensor (noise) and the encoder (JPEG).

Each function takes what the condition needs and nothing else, so a test can apply one alone.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
FloatImage = NDArray[np.float32]
Mask = NDArray[np.bool_]

JPEG_QUALITY: Final = 90
LIT_SIGNBOARD: Final = 0.1  # how much of its daylight brightness a signboard keeps as its own light
# Irwin–Hall: the sum of four uniform bytes has this standard deviation (√(4·(256²−1)/12)).
_IRWIN_HALL_STD: Final = math.sqrt(4 * (256**2 - 1) / 12)


def occluder_columns(
    rng: np.random.Generator, sign: Mask, fraction: float
) -> tuple[int, int] | None:
    """Adjacent columns ``[start, end)`` of ``sign`` that hold ``fraction`` of its pixels."""
    return _span(rng, sign.sum(axis=0), fraction)


def occluder_rows(sign: Mask, fraction: float) -> tuple[int, int] | None:
    """Rows ``[0, end)`` from the top of ``sign`` that hold ``fraction`` of its pixels."""
    counts = sign.sum(axis=1)
    cum = np.concatenate([[0], np.cumsum(counts)])
    if cum[-1] == 0 or fraction <= 0:
        return None
    end = int(np.searchsorted(cum, fraction * cum[-1]))
    return (0, max(end, 1))


def _span(
    rng: np.random.Generator, counts: NDArray[np.int_], fraction: float
) -> tuple[int, int] | None:
    cum = np.concatenate([[0], np.cumsum(counts)])
    total = int(cum[-1])
    if total == 0 or fraction <= 0:
        return None
    target = fraction * total
    # Starts from which `target` pixels still lie to the right; pick one at random.
    last_start = int(np.searchsorted(cum, total - target, side="right")) - 1
    start = int(rng.integers(0, max(last_start, 0) + 1))
    end = int(np.searchsorted(cum, cum[start] + target))
    return (start, max(end, start + 1))


def apply_light(image: Image, light: float, emissive: FloatImage | None) -> Image:
    """Dim ``image`` towards night; ``emissive`` (0–1) marks pixels that shine by themselves.

    Ambient-lit pixels become ``light · I^γ`` with γ = 1 + 0.8·(1 − light) (dusk crushes the
    shadows first); self-lit pixels blend towards 0.85·I by their ``emissive`` weight.
    """
    if light >= 1.0:
        return image
    gamma = 1.0 + 0.8 * (1.0 - light)
    lut = np.power(np.arange(256) / 255.0, gamma) * 255.0 * light
    ambient = _u8(cv2.LUT(image, np.clip(lut + 0.5, 0, 255).astype(np.uint8)))
    if emissive is None or not emissive.any():
        return ambient
    lit = cv2.convertScaleAbs(image, alpha=0.85)
    return _u8(cv2.blendLinear(ambient, lit, 1.0 - emissive, emissive))


def apply_rain(rng: np.random.Generator, image: Image, rain: float, light: float) -> Image:
    """Streaks (~2000 per 1280×720 at rain 1) over a veil of haze, lit by ``light``."""
    if rain <= 0:
        return image
    h, w = image.shape[:2]
    n = round(rain * 2000 * (w * h) / (1280 * 720))
    slant = rng.uniform(-0.35, 0.35)
    x = rng.uniform(0, w, n)
    y = rng.uniform(-20, h, n)
    length = rng.uniform(10, 40, n)
    dx = (slant + rng.normal(0, 0.03, n)) * length
    starts = np.stack([x, y], 1)
    ends = np.stack([x + dx, y + length], 1)
    lines = np.stack([starts, ends], 1).round().astype(np.int32).reshape(-1, 2, 1, 2)
    layer = np.zeros((h, w), np.uint8)
    cv2.polylines(layer, list(lines), False, 255, 1, cv2.LINE_AA)
    brightness = 210.0 * max(light, 0.35)
    haze = 0.25 * rain
    veiled = cv2.addWeighted(image, 1.0 - haze, image, 0.0, haze * brightness * 0.8)
    alpha = layer.astype(np.float32) * np.float32(0.55 / 255.0)
    streak = np.full_like(image, round(brightness))
    return _u8(cv2.blendLinear(veiled, streak, 1.0 - alpha, alpha))


def apply_blur(image: Image, sigma: float) -> Image:
    """Gaussian blur of σ px (defocus / motion of the lens)."""
    if sigma <= 0:
        return image
    return _u8(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma))


def apply_noise(rng: np.random.Generator, image: Image, sigma: float) -> Image:
    """Add sensor noise of σ (0–255 scale) per pixel and channel, rounded and saturated.

    The noise is the Irwin–Hall sum of four uniform bytes, rescaled: standard deviation exactly
    σ, a near-normal shape, and a fraction of the cost of ``standard_normal`` at this size.
    """
    if sigma <= 0:
        return image
    raw = rng.integers(0, 2**64 - 1, image.size // 2 + 1, np.uint64, endpoint=True)
    parts = raw.view(np.uint8)[: 4 * image.size].reshape(4, *image.shape)
    total = parts[0].astype(np.int16)
    total += parts[1]
    total += parts[2]
    total += parts[3]
    k = sigma / _IRWIN_HALL_STD
    return _u8(cv2.addWeighted(image, 1.0, total, k, -510.0 * k, dtype=cv2.CV_8U))


def _u8(array: object) -> Image:
    """OpenCV's result as what it is: 8-bit (no copy)."""
    return np.asarray(array, dtype=np.uint8)


def encode_jpeg(image: Image) -> bytes:
    """The JPEG bytes of ``image`` (BGR) at the fixed quality."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - only on a broken OpenCV build
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()
