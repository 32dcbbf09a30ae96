"""A procedural street: sky, building facades with windows and shopfronts, road and clutter.

The background is the part of a scene no annotation covers, so it is built to tempt a detector:
window grids, striped awnings, posters, traffic signs, cars and cables are rectangles, text and
corners that are *not* registered signboards. Everything is drawn from the scene's generator,
so the same generator state gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Colour = tuple[int, int, int]

_FACADES: Final[tuple[Colour, ...]] = (
    (150, 160, 170),
    (120, 140, 175),
    (90, 110, 160),
    (170, 180, 190),
    (110, 120, 125),
    (140, 170, 200),
    (80, 90, 140),
    (160, 150, 140),
    (100, 130, 110),
    (60, 70, 90),
)  # fmt: skip  (BGR: concrete, sandstone, brick, plaster, tile)
_POSTER_WORDS: Final = ("SALE", "50%", "OPEN", "NEW", "RENT", "TO LET", "2F", "ATM", "EXIT")


@dataclass(frozen=True)
class Background:
    """A street without signboards, and which pixels are lights of their own at night."""

    image: Image  # BGR
    emissive: Image  # 255 where a lamp or lit window shines, else 0
    band: tuple[int, int]  # rows (top, bottom) of the facades where signboards may hang


def draw_background(rng: np.random.Generator, width: int, height: int) -> Background:
    """Draw a street scene of ``width``×``height`` pixels."""
    img = np.empty((height, width, 3), np.uint8)
    emissive = np.zeros((height, width), np.uint8)
    horizon = int(height * rng.uniform(0.55, 0.62))
    ground = int(height * rng.uniform(0.74, 0.8))
    _sky(img, rng, horizon)
    _facades(img, emissive, rng, ground)
    _road(img, rng, ground, horizon)
    _clutter(img, emissive, rng, ground)
    _texture(img, rng)
    return Background(img, emissive, (int(height * 0.06), int(ground - height * 0.14)))


def _colour(rng: np.random.Generator, base: Colour, jitter: float = 18.0) -> Colour:
    c = np.clip(np.array(base) + rng.normal(0, jitter, 3), 0, 255).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]))


def _sky(img: Image, rng: np.random.Generator, horizon: int) -> None:
    top = np.array(_colour(rng, (170, 110, 60), 20), np.float32)
    bottom = np.array(_colour(rng, (235, 215, 200), 12), np.float32)
    t = np.clip(np.arange(img.shape[0], dtype=np.float32) / max(horizon, 1), 0, 1)[:, None]
    column = (top + (bottom - top) * t).astype(np.uint8)[:, None, :]
    img[:] = cv2.resize(column, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)


def _facades(img: Image, emissive: Image, rng: np.random.Generator, ground: int) -> None:
    h, w = img.shape[:2]
    x = int(-rng.uniform(0, 0.1) * w)
    while x < w:
        fw = int(rng.uniform(0.12, 0.3) * w)
        top = int(rng.uniform(-0.05, 0.3) * h)
        colour = _colour(rng, _FACADES[rng.integers(len(_FACADES))])
        cv2.rectangle(img, (x, top), (x + fw, ground), colour, -1)
        cv2.line(img, (x, top), (x, ground), _shade(colour, 0.6), 2)
        floor_h = int(rng.uniform(0.07, 0.11) * h)
        shop_top = ground - int(0.1 * h)
        _windows(img, emissive, rng, (x, top, fw, shop_top - top), floor_h, colour)
        _shopfront(img, emissive, rng, (x, shop_top, fw, ground - shop_top))
        x += fw


def _shade(c: Colour, f: float) -> Colour:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def _windows(
    img: Image,
    emissive: Image,
    rng: np.random.Generator,
    box: tuple[int, int, int, int],
    floor_h: int,
    facade: Colour,
) -> None:
    x, y, w, h = box
    cols = max(1, int(w / rng.uniform(40, 80)))
    pitch = w / cols
    win_w = int(pitch * rng.uniform(0.45, 0.7))
    win_h = int(floor_h * rng.uniform(0.45, 0.7))
    glass = _colour(rng, (90, 70, 50), 15)
    lit = rng.random() < 0.5
    for fy in range(y + floor_h // 4, y + h - win_h, floor_h):
        cv2.line(img, (x, fy - floor_h // 5), (x + w, fy - floor_h // 5), _shade(facade, 0.8), 2)
        for c in range(cols):
            wx = int(x + c * pitch + (pitch - win_w) / 2)
            if rng.random() < 0.1:  # an air conditioner instead of a window
                cv2.rectangle(
                    img, (wx, fy), (wx + win_w // 2, fy + win_h // 2), (200, 200, 205), -1
                )
                cv2.rectangle(img, (wx, fy), (wx + win_w // 2, fy + win_h // 2), (120, 120, 120), 1)
                continue
            if lit and rng.random() < 0.3:
                cv2.rectangle(img, (wx, fy), (wx + win_w, fy + win_h), (120, 200, 240), -1)
                cv2.rectangle(emissive, (wx, fy), (wx + win_w, fy + win_h), 255, -1)
            else:
                cv2.rectangle(img, (wx, fy), (wx + win_w, fy + win_h), glass, -1)
            cv2.rectangle(img, (wx, fy), (wx + win_w, fy + win_h), (235, 235, 235), 2)
            cv2.line(img, (wx + win_w // 2, fy), (wx + win_w // 2, fy + win_h), (225, 225, 225), 1)


def _shopfront(
    img: Image, emissive: Image, rng: np.random.Generator, box: tuple[int, int, int, int]
) -> None:
    x, y, w, h = box
    cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng, (60, 60, 65), 10), -1)
    if rng.random() < 0.5:  # roller shutter
        sx0, sx1 = x + int(w * 0.1), x + int(w * 0.6)
        cv2.rectangle(img, (sx0, y + h // 4), (sx1, y + h), (150, 155, 160), -1)
        for sy in range(y + h // 4, y + h, 4):
            cv2.line(img, (sx0, sy), (sx1, sy), (110, 115, 120), 1)
    else:  # lit shop window
        cv2.rectangle(img, (x + w // 8, y + h // 4), (x + w * 5 // 8, y + h), (170, 210, 230), -1)
        cv2.rectangle(emissive, (x + w // 8, y + h // 4), (x + w * 5 // 8, y + h), 255, -1)
    if rng.random() < 0.6:  # striped awning
        a, b = _colour(rng, (40, 40, 180), 40), (240, 240, 240)
        ay, ah = y - h // 6, h // 3
        for k, sx in enumerate(range(x, x + w, 14)):
            pts = np.array([[sx, ay], [sx + 14, ay], [sx + 18, ay + ah], [sx + 4, ay + ah]])
            cv2.fillPoly(img, [pts.astype(np.int32)], a if k % 2 else b)


def _road(img: Image, rng: np.random.Generator, ground: int, horizon: int) -> None:
    h, w = img.shape[:2]
    kerb = ground + int(0.04 * h)
    cv2.rectangle(img, (0, ground), (w, kerb), _colour(rng, (165, 165, 160), 8), -1)
    for px in range(int(-rng.uniform(0, 40)), w, 40):  # paving joints
        cv2.line(img, (px, ground), (px - 10, kerb), (130, 130, 128), 1)
    cv2.rectangle(img, (0, kerb), (w, h), _colour(rng, (75, 75, 78), 6), -1)
    vx = int(w * rng.uniform(0.35, 0.65))
    for lane in (-0.8, 0.0, 0.8):
        bottom_x = int(w / 2 + lane * w)
        for t0 in np.arange(0.1, 1.0, 0.2):
            t1 = t0 + 0.1
            p0 = (vx + (bottom_x - vx) * t0, horizon + (h - horizon) * t0)
            p1 = (vx + (bottom_x - vx) * t1, horizon + (h - horizon) * t1)
            if p1[1] <= kerb:
                continue
            half0, half1 = 2 + 6 * t0, 2 + 6 * t1
            pts = np.array(
                [[p0[0] - half0, max(p0[1], kerb)], [p0[0] + half0, max(p0[1], kerb)],
                 [p1[0] + half1, p1[1]], [p1[0] - half1, p1[1]]]
            )  # fmt: skip
            cv2.fillPoly(img, [pts.astype(np.int32)], (220, 220, 220), cv2.LINE_AA)


def _clutter(img: Image, emissive: Image, rng: np.random.Generator, ground: int) -> None:
    h, w = img.shape[:2]
    for _ in range(rng.integers(1, 4)):  # overhead cables
        y0, y1 = (int(v) for v in rng.uniform(0.05, 0.4, 2) * h)
        cv2.line(img, (0, y0), (w, y1), (40, 40, 40), 1, cv2.LINE_AA)
    for _ in range(rng.integers(2, 6)):  # posters: upright, so unlike a signboard
        pw = int(rng.uniform(0.025, 0.05) * w)
        px, py = int(rng.uniform(0, w - pw)), int(rng.uniform(0.3, 0.6) * h)
        ph = int(pw * rng.uniform(1.3, 1.8))
        cv2.rectangle(img, (px, py), (px + pw, py + ph), _colour(rng, (200, 200, 200), 50), -1)
        cv2.circle(img, (px + pw // 2, py + ph // 3), pw // 4, _colour(rng, (80, 80, 200), 60), -1)
        word = _POSTER_WORDS[rng.integers(len(_POSTER_WORDS))]
        cv2.putText(
            img,
            word,
            (px + 2, py + ph - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            pw / 110,
            (20, 20, 20),
            1,
            cv2.LINE_AA,
        )
    for _ in range(rng.integers(1, 4)):  # street lamps
        lx = int(rng.uniform(0, w))
        top = int(rng.uniform(0.25, 0.45) * h)
        cv2.rectangle(img, (lx - 3, top), (lx + 3, ground + int(0.05 * h)), (55, 60, 58), -1)
        cv2.ellipse(img, (lx + 14, top), (16, 5), 0, 0, 360, (210, 235, 250), -1, cv2.LINE_AA)
        cv2.ellipse(emissive, (lx + 14, top), (16, 5), 0, 0, 360, 255, -1)
    for _ in range(rng.integers(0, 3)):  # traffic signs
        sx, sy = int(rng.uniform(0, w)), int(rng.uniform(0.5, 0.68) * h)
        r = int(rng.uniform(10, 22))
        cv2.line(img, (sx, sy), (sx, ground + 20), (90, 90, 90), 3)
        if rng.random() < 0.5:
            cv2.circle(img, (sx, sy), r, (30, 30, 200), -1, cv2.LINE_AA)
            cv2.circle(img, (sx, sy), int(r * 0.7), (245, 245, 245), -1, cv2.LINE_AA)
        else:
            tri = np.array([[sx, sy - r], [sx + r, sy + r], [sx - r, sy + r]], np.int32)
            cv2.fillPoly(img, [tri], (30, 30, 200), cv2.LINE_AA)
            cv2.fillPoly(
                img, [((tri - [sx, sy]) * 0.6 + [sx, sy]).astype(np.int32)], (240, 240, 240)
            )
    for _ in range(rng.integers(1, 4)):  # cars
        cw = int(rng.uniform(0.1, 0.18) * w)
        cx, cy = int(rng.uniform(-0.05, 0.95) * w), int(ground + rng.uniform(0.06, 0.14) * h)
        ch = cw // 3
        body = _colour(rng, (120, 120, 120), 70)
        cv2.rectangle(img, (cx, cy), (cx + cw, cy + ch), body, -1)
        cv2.rectangle(
            img, (cx + cw // 5, cy - ch // 2), (cx + cw * 4 // 5, cy), _shade(body, 0.8), -1
        )
        cv2.rectangle(
            img, (cx + cw // 4, cy - ch // 2 + 3), (cx + cw * 3 // 4, cy - 2), (70, 50, 40), -1
        )
        for wx in (cx + cw // 5, cx + cw * 4 // 5):
            cv2.circle(img, (wx, cy + ch), ch // 3, (25, 25, 25), -1, cv2.LINE_AA)
    for _ in range(rng.integers(0, 3)):  # trees
        tx, ty = int(rng.uniform(0, w)), int(rng.uniform(0.45, 0.6) * h)
        cv2.rectangle(img, (tx - 4, ty), (tx + 4, ground + 10), (40, 60, 80), -1)
        for _ in range(8):
            off = rng.normal(0, 18, 2).astype(int)
            colour = _colour(rng, (50, 120, 60), 20)
            cv2.circle(
                img, (tx + int(off[0]), ty + int(off[1])), int(rng.uniform(14, 26)), colour, -1
            )


def _texture(img: Image, rng: np.random.Generator) -> None:
    """Mottled plaster and grime: coarse noise upsampled, then a finer grain."""
    h, w = img.shape[:2]
    coarse = rng.standard_normal((h // 16 + 1, w // 16 + 1), dtype=np.float32) * 7
    half = np.asarray(
        cv2.resize(coarse, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC), np.float32
    )
    half += rng.random((h // 2, w // 2), dtype=np.float32) * 12 - 6
    half3 = cv2.cvtColor(half, cv2.COLOR_GRAY2BGR).astype(np.int16)
    tex = cv2.resize(half3, (w, h), interpolation=cv2.INTER_NEAREST)
    img[:] = cv2.add(img, tex, dtype=cv2.CV_8U)
