"""Tiny synthetic street scenes for the AI box tests: signboard templates warped at known corners
into a textured facade, with optional blur, darkness and sensor noise.

The true box of every signboard is known exactly (the bounding box of the corners it was warped
to), so detection quality can be checked without the scene generator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]

WORDS = [
    "WING ON TEA", "GOLDEN DRAGON", "LUCKY STAR CAFE", "PEARL BAKERY", "KOWLOON OPTICAL",
    "JADE GARDEN", "HAPPY VALLEY", "SUNRISE HOTEL", "EAST WIND BOOKS", "RED LOTUS",
    "TAI PING NOODLE", "OCEAN PHARMACY", "SILVER MOON", "KAM FUNG", "NEW ASIA TAILOR",
    "FORTUNE BANK", "MING KEE", "PHOENIX TOYS", "CITY HARDWARE", "BLUE SKY TRAVEL",
    "GRAND CINEMA", "LOK FU FRUIT", "YAT CHAU", "HING LUNG", "WAH FAT CAMERA",
    "SHUN TAK SHOES", "PACIFIC DENTAL", "MEI LING FLOWERS", "UNION GOLD", "TIN HAU SEAFOOD",
]
PALETTE = [
    ((250, 240, 60), (140, 20, 20)), ((255, 255, 255), (20, 60, 150)),
    ((20, 20, 20), (240, 200, 40)), ((240, 240, 240), (20, 110, 50)),
    ((255, 215, 0), (20, 20, 20)), ((130, 10, 10), (245, 235, 220)),
]


def template(text: str, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> Image:
    """A 480×160 frontal signboard (RGB): text on a coloured board with a border."""
    img = np.zeros((160, 480, 3), np.uint8)
    img[:] = bg
    cv2.rectangle(img, (6, 6), (473, 153), fg, 3)
    font = cv2.FONT_HERSHEY_DUPLEX
    scale = 1.0
    while cv2.getTextSize(text, font, scale + 0.1, 3)[0][0] < 430 and scale < 2.4:
        scale += 0.1
    (tw, th), _ = cv2.getTextSize(text, font, scale, 3)
    cv2.putText(img, text, ((480 - tw) // 2, (160 + th) // 2), font, scale, fg, 3, cv2.LINE_AA)
    return img


def write_register(directory: Path, n: int = 6) -> list[Image]:
    """A ``labctl-register/1`` register of ``n`` signboards in ``directory``; their BGR
    templates, in register order (ids SB-0001…)."""
    (directory / "register").mkdir(parents=True, exist_ok=True)
    entries, images = [], []
    for i in range(n):
        fg, bg = PALETTE[i % len(PALETTE)]
        rgb = template(WORDS[i % len(WORDS)], fg, bg)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        name = f"register/SB-{i + 1:04d}.png"
        cv2.imwrite(str(directory / name), bgr)
        images.append(np.asarray(bgr, np.uint8))
        entries.append({"id": f"SB-{i + 1:04d}", "text": WORDS[i % len(WORDS)], "fg": list(fg),
                        "bg": list(bg), "width_m": 2.4, "height_m": 0.8, "template": name})
    doc = {"schema": "labctl-register/1", "signboards": entries}
    (directory / "register.json").write_text(json.dumps(doc), encoding="utf-8")
    return images


def facade(rng: np.random.Generator, width: int = 1280, height: int = 720) -> Image:
    """A textured street background: wall noise, windows, and stray text (distractors)."""
    base = rng.integers(70, 160, 3)
    img = np.empty((height, width, 3), np.float32)
    img[:] = base
    img += cv2.GaussianBlur(rng.normal(0, 25, (height, width, 1)).astype(np.float32), (0, 0), 3)[
        ..., None
    ]
    out = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, -1 if rng.random() < 0.5 else 2)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 200)), int(rng.integers(30, height))
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.putText(out, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.6, 1.4)),
                    color, 2, cv2.LINE_AA)
    return out


def quad_at(rng: np.random.Generator, height_px: float, x: float, y: float, yaw: float) -> (
    npt.NDArray[np.float32]
):
    """Corners (clockwise from top-left) of a 3:1 signboard ``height_px`` tall at ``x, y``,
    foreshortened as by a yaw: the far side shorter, the board narrower."""
    w = 3.0 * height_px * float(np.cos(np.radians(yaw)))
    shrink = 1.0 - 0.25 * float(np.sin(np.radians(abs(yaw))))
    far = height_px * shrink
    dy = (height_px - far) / 2
    if yaw >= 0:  # right side further away
        pts = [[x, y], [x + w, y + dy], [x + w, y + height_px - dy], [x, y + height_px]]
    else:
        pts = [[x, y + dy], [x + w, y], [x + w, y + height_px], [x, y + height_px - dy]]
    jitter = rng.normal(0, 0.5, (4, 2))
    return (np.array(pts, np.float64) + jitter).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    """A clean scene and its truth: (register index, box) per signboard."""

    image: Image
    truth: list[tuple[int, Box]]


def scene(templates: list[Image], seed: int, height_px: float = 90.0, count: int = 2) -> Scene:
    """``count`` distinct signboards, ``height_px`` tall, at random places on a facade."""
    rng = np.random.default_rng(seed)
    img = facade(rng)
    chosen = rng.choice(len(templates), size=count, replace=False)
    truth: list[tuple[int, Box]] = []
    slot_w = 1280 // count
    for k, t in enumerate(chosen):
        yaw = float(rng.uniform(-30, 30))
        w = 3 * height_px
        x = k * slot_w + float(rng.uniform(10, max(11, slot_w - w - 10)))
        y = float(rng.uniform(20, 700 - height_px))
        quad = quad_at(rng, height_px, x, y, yaw)
        truth.append((int(t), paste(img, templates[int(t)], quad)))
    return Scene(img, truth)


def degrade(img: Image, seed: int, blur: float = 0.0, light: float = 1.0, noise: float = 0.0) -> (
    Image
):
    """Gaussian blur (σ px), dimming to ``light`` of daylight, then sensor noise (σ on 0–255)."""
    out = img.astype(np.float32)
    if blur > 0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), blur), np.float32)
    out *= light
    if noise > 0:
        out += np.random.default_rng(seed).normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(img: Image, quality: int = 90) -> bytes:
    """``img`` as JPEG bytes (what the lab publishes on ``stim/…``)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def paste(img: Image, tpl: Image, quad: npt.NDArray[np.float32]) -> Box:
    """Warp ``tpl`` onto ``img`` (in place) at ``quad``; the true box."""
    src = np.array([[0, 0], [tpl.shape[1], 0], [tpl.shape[1], tpl.shape[0]], [0, tpl.shape[0]]],
                   np.float32)
    h = cv2.getPerspectiveTransform(src, quad)
    size = (img.shape[1], img.shape[0])
    warped = cv2.warpPerspective(tpl, h, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full(tpl.shape[:2], 255, np.uint8), h, size) > 127
    img[mask] = warped[mask]
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)
