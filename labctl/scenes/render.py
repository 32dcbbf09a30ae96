"""Rendering one scene: background, signboards in perspective, then the image conditions.

The ground truth comes from geometry, not from pixels: each signboard's bbox is the
axis-aligned box of its warped quad (continuous COCO coordinates, before occlusion), clipped
to the image. Occlusion per signboard is measured on the drawn masks: the share of the
signboard's pixels (warp coverage ≥ ½) that an occluder covers.

Random draws happen in a fixed order that depends only on the seed and on the conditions that
shape the scene (size, angle, occlusion), so the same seed renders the same street under a
different blur, light, noise or rain — which is what lets tests (and people) compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from labctl.scenes.background import draw_background
from labctl.scenes.conditions import Conditions
from labctl.scenes.effects import (
    LIT_SIGNBOARD,
    apply_blur,
    apply_light,
    apply_noise,
    apply_rain,
    occluder_columns,
    occluder_rows,
)
from labctl.scenes.geometry import Box, Quad, perspective_quad, quad_box, roi_of, roi_warp
from labctl.scenes.register import Register

Image = NDArray[np.uint8]

MAX_SIGNBOARDS: Final = 4
_GAP: Final = 8  # px kept free between two signboards' boxes
_PLACEMENT_TRIES: Final = 60


class SceneError(ValueError):
    """A scene cannot be rendered as asked; the message says why in words."""


@dataclass(frozen=True)
class PlacedSignboard:
    """A signboard as drawn in a scene."""

    register_id: str
    quad: Quad  # corners TL, TR, BR, BL in continuous image coordinates
    bbox: Box  # COCO x, y, w, h of the quad, clipped to the image
    height_px: float  # height of its vertical centre line
    occlusion: float  # share of its pixels hidden by occluders


@dataclass(frozen=True)
class Scene:
    """A rendered scene: the final 8-bit image (before JPEG) and what is in it."""

    image: Image  # BGR
    signboards: tuple[PlacedSignboard, ...]
    conditions: Conditions


@dataclass(frozen=True)
class _Warped:
    sb_id: str
    quad: Quad
    height_px: float
    roi: tuple[int, int, int, int]
    colour: NDArray[np.float32]  # premultiplied BGR in the roi
    alpha: NDArray[np.float32]  # coverage 0–1 in the roi


def render_scene(
    register: Register,
    conditions: Conditions,
    rng: np.random.Generator,
    size: tuple[int, int] = (1280, 720),
    *,
    draw_signboards: bool = True,
) -> Scene:
    """Render one scene from ``rng``.

    ``draw_signboards=False`` renders the identical scene without the signboards (same random
    draws, same ground truth), for checking that the boxes are where the signboards are.
    """
    width, height = size
    bg = draw_background(rng, width, height)
    warped = _place(rng, register, conditions, bg.band, width, height)
    image = bg.image
    if draw_signboards:
        for wp in warped:
            x0, y0, x1, y1 = wp.roi
            roi = image[y0:y1, x0:x1].astype(np.float32)
            roi = roi * (1.0 - wp.alpha[:, :, None]) + wp.colour
            image[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    occluded = np.zeros((height, width), np.uint8)
    if conditions.occlusion > 0:
        for wp in warped:
            _occlude(rng, image, occluded, wp, conditions.occlusion)
    shares = [_hidden_share(wp, occluded) for wp in warped]

    emissive = None
    if conditions.light < 1.0:
        # What shines by itself: lamps and lit windows, unless a signboard hangs in front,
        # then the signboards (dimly lit), unless an occluder stands in front.
        emissive = bg.emissive.astype(np.float32) * np.float32(1.0 / 255.0)
        if draw_signboards:
            for wp in warped:
                x0, y0, x1, y1 = wp.roi
                behind = emissive[y0:y1, x0:x1]
                behind += (LIT_SIGNBOARD - behind) * wp.alpha
        emissive[occluded > 0] = 0.0
    lit = apply_light(image, conditions.light, emissive)
    wet = apply_rain(rng, lit, conditions.rain, conditions.light)
    blurred = apply_blur(wet, conditions.blur)
    final = apply_noise(rng, blurred, conditions.noise)
    placed = tuple(
        PlacedSignboard(
            register_id=wp.sb_id,
            quad=wp.quad,
            bbox=quad_box(wp.quad, width, height),
            height_px=wp.height_px,
            occlusion=share,
        )
        for wp, share in zip(warped, shares, strict=True)
    )
    return Scene(final, placed, conditions)


def _place(
    rng: np.random.Generator,
    register: Register,
    cond: Conditions,
    band: tuple[int, int],
    width: int,
    height: int,
) -> list[_Warped]:
    """Choose 1–4 signboards and where they hang; the first is exactly ``cond.size`` tall."""
    boards = register.signboards
    k = min(int(rng.integers(1, MAX_SIGNBOARDS + 1)), len(boards))
    chosen = [boards[int(i)] for i in rng.choice(len(boards), size=k, replace=False)]
    focal = float(width)
    placed: list[_Warped] = []
    boxes: list[tuple[float, float, float, float]] = []
    for n, sb in enumerate(chosen):
        height_px = cond.size if n == 0 else cond.size * float(rng.uniform(1.0, 1.5))
        yaw = cond.angle * (1.0 if rng.random() < 0.5 else -1.0)
        try:
            quad = perspective_quad(sb.aspect, height_px, yaw, focal)
        except ValueError as exc:
            raise SceneError(str(exc)) from None
        # Centre ranges that keep the whole quad in the image and its top in the facade band.
        lo_x, hi_x = -quad[:, 0].min() + 2, width - quad[:, 0].max() - 2
        lo_y = min(max(band[0], -quad[:, 1].min() + 2), height - quad[:, 1].max() - 2)
        hi_y = max(lo_y, min(band[1], height - quad[:, 1].max() - 2))
        tries = [(rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(_PLACEMENT_TRIES)]
        problem = _misfit(quad, width, height)
        if problem:
            if n == 0:
                raise SceneError(
                    f"signboard {sb.id} at {height_px:.0f} px and {cond.angle:.0f}° {problem}"
                )
            continue
        for u, v in tries:
            cx, cy = lo_x + u * (hi_x - lo_x), lo_y + v * (hi_y - lo_y)
            q = quad + np.array([cx, cy])
            box = (q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max())
            if all(_apart(box, other) for other in boxes):
                boxes.append(box)
                placed.append(_warp(register, sb.id, q, height_px, width, height))
                break
    return placed


def check_fits(register: Register, conditions: list[Conditions], size: tuple[int, int]) -> None:
    """Raise SceneError if the widest signboard at some ``conditions`` cannot fit the image."""
    widest = max(register.signboards, key=lambda sb: sb.aspect)
    for cond in conditions:
        try:
            problem = _misfit(
                perspective_quad(widest.aspect, cond.size, cond.angle, size[0]), *size
            )
        except ValueError as exc:
            raise SceneError(str(exc)) from None
        if problem:
            raise SceneError(
                f"signboard {widest.id} (aspect {widest.aspect:.1f}) at size {cond.size:g} px "
                f"and angle {cond.angle:g}° {problem}; ask for smaller signboards"
            )


def _misfit(quad: Quad, width: int, height: int) -> str | None:
    qw = quad[:, 0].max() - quad[:, 0].min()
    qh = quad[:, 1].max() - quad[:, 1].min()
    if qw > width - 4 or qh > height - 4:
        return f"({qw:.0f}×{qh:.0f} px) does not fit a {width}×{height} image"
    return None


def _apart(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0] or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1]


def _warp(
    register: Register, sb_id: str, quad: Quad, height_px: float, width: int, height: int
) -> _Warped:
    """The template warped onto ``quad``, premultiplied, in the quad's pixel region."""
    template = register.template(sb_id)
    th, tw = template.shape[:2]
    # Shrink with area averaging first: a plain warp from 160 px down to 20 px would alias.
    tallest = float(max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])))
    if tallest * 1.5 < th:
        scale = tallest * 1.5 / th
        tw, th = max(2, round(tw * scale)), max(2, round(th * scale))
        template = np.asarray(
            cv2.resize(template, (tw, th), interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
    rgba = np.dstack([template, np.full((th, tw), 255, np.uint8)])
    x0, y0, x1, y1 = roi_of(quad, width, height)
    m = roi_warp(tw, th, quad, (x0, y0))
    out = cv2.warpPerspective(
        rgba,
        m,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    ).astype(np.float32)
    # Bilinear sampling against a transparent black border yields premultiplied colour.
    return _Warped(sb_id, quad, height_px, (x0, y0, x1, y1), out[:, :, :3], out[:, :, 3] / 255.0)


def _occlude(
    rng: np.random.Generator, image: Image, occluded: Image, wp: _Warped, fraction: float
) -> None:
    """Draw a pole, a passer-by or an awning over ``fraction`` of the signboard's pixels."""
    x0, y0, x1, _ = wp.roi
    sign = wp.alpha >= 0.5
    kind = int(rng.integers(3))
    colour = tuple(int(c) for c in rng.integers(20, 200, 3))
    reach = int(rng.uniform(6, 40))
    height, width = image.shape[:2]
    top = int(np.nonzero(sign.any(axis=1))[0][0]) + y0 - reach if sign.any() else y0
    shapes: list[NDArray[np.int32]] = []
    stripes: tuple[int, int, int, int] | None = None
    if kind < 2:  # a pole, or a passer-by close to the camera
        span = occluder_columns(rng, sign, fraction)
        if span is None:
            return
        a, b = x0 + span[0], x0 + span[1] - 1
        shapes.append(np.array([[a, top], [b, top], [b, height], [a, height]], np.int32))
        if kind == 1:  # shoulders end above the sign; the head sits on them
            r = max(2, (b - a) // 3)
            head = cv2.ellipse2Poly(((a + b) // 2, top - r), (r, r), 0, 0, 360, 10)
            shapes.append(np.asarray(head, np.int32))
    else:  # an awning or banner hanging over the sign's top
        span = occluder_rows(sign, fraction)
        if span is None:
            return
        bottom = y0 + span[1] - 1
        left, right = max(0, x0 - reach), min(width, x1 + reach)
        shapes.append(
            np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.int32)
        )
        stripes = (left, top, right, bottom)
    for pts in shapes:
        cv2.fillPoly(image, [pts.astype(np.int32)], colour)
        cv2.fillPoly(occluded, [pts.astype(np.int32)], 255)
    if stripes is not None:  # an awning's stripes, inside the band already counted
        x_a, y_a, x_b, y_b = stripes
        for sx in range(x_a, x_b, 24):
            cv2.rectangle(image, (sx, y_a), (min(sx + 11, x_b), y_b), (235, 235, 235), -1)


def _hidden_share(wp: _Warped, occluded: Image) -> float:
    x0, y0, x1, y1 = wp.roi
    sign = wp.alpha >= 0.5
    total = int(sign.sum())
    if total == 0:
        return 0.0
    return float((sign & (occluded[y0:y1, x0:x1] > 0)).sum()) / total
