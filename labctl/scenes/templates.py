"""Drawing the canonical frontal template of a signboard.

A template is what an identifier matches against, so it is drawn to be *recognisable*: a
border, a logo with inner detail, a band of stripes, checks or dots, the shop's name in one of
several Hershey fonts and weights, and a small second line. All of it is anti-aliased and
full of corners, so ORB/SIFT find many stable keypoints that differ from one shop to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
BGR = tuple[int, int, int]

TEMPLATE_HEIGHT: Final = 160  # px; the width follows the signboard's aspect ratio

_FONTS: Final = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC,
    cv2.FONT_HERSHEY_COMPLEX | cv2.FONT_ITALIC,
)
_LOGOS: Final = ("star", "diamond", "triangle", "hexagon", "rings", "square")
_BANDS: Final = ("stripes", "checks", "dots", "zigzag")


@dataclass(frozen=True)
class TemplateStyle:
    """The look of one template, drawn from a seeded generator."""

    fg: BGR
    bg: BGR
    accent: BGR
    font: int
    thickness: int
    logo: str
    logo_left: bool
    band: str
    band_top: bool
    subtitle: str


def draw_template(text: str, width: int, style: TemplateStyle) -> Image:
    """The frontal template (BGR, ``TEMPLATE_HEIGHT`` px high, ``width`` px wide)."""
    h, w = TEMPLATE_HEIGHT, width
    img = np.empty((h, w, 3), np.uint8)
    img[:] = style.bg
    band_h = 22
    band_y = 10 if style.band_top else h - 10 - band_h
    _band(img, (12, band_y, w - 24, band_h), style)
    logo_box = h - 36
    logo_x = 16 if style.logo_left else w - 16 - logo_box
    body_top = 12 + band_h + 4 if style.band_top else 14
    body_bottom = h - 14 if style.band_top else band_y - 4
    logo_y = (body_top + body_bottom - logo_box) // 2
    logo_box = min(logo_box, body_bottom - body_top)
    _logo(img, (logo_x, logo_y, logo_box), style)
    text_x0 = logo_x + logo_box + 12 if style.logo_left else 16
    text_x1 = w - 16 if style.logo_left else logo_x - 12
    main_h = int((body_bottom - body_top) * 0.62)
    _fit_text(img, text, (text_x0, body_top, text_x1 - text_x0, main_h), style, style.thickness)
    sub_top = body_top + main_h + 4
    text_w = text_x1 - text_x0
    sub_box = (text_x0 + text_w // 6, sub_top, text_w * 2 // 3, body_bottom - sub_top)
    _fit_text(img, style.subtitle, sub_box, style, max(1, style.thickness - 2), style.accent)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), style.fg, 6, cv2.LINE_AA)
    cv2.rectangle(img, (6, 6), (w - 7, h - 7), style.accent, 2, cv2.LINE_AA)
    return img


def _band(img: Image, box: tuple[int, int, int, int], style: TemplateStyle) -> None:
    x, y, w, h = box
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), style.accent, -1)
    if style.band == "stripes":
        for sx in range(x - h, x + w, 14):
            pts = np.array([[sx, y + h - 1], [sx + 7, y + h - 1], [sx + 7 + h, y], [sx + h, y]])
            cv2.fillPoly(img[y : y + h, x : x + w], [pts - [x, y]], style.fg, cv2.LINE_AA)
    elif style.band == "checks":
        cell = h // 2
        for i, sx in enumerate(range(x, x + w - cell + 1, cell)):
            row = i % 2
            cv2.rectangle(
                img, (sx, y + row * cell), (sx + cell - 1, y + row * cell + cell - 1), style.fg, -1
            )
    elif style.band == "dots":
        for i, cx in enumerate(range(x + 8, x + w - 6, 16)):
            r = 5 if i % 3 else 7
            cv2.circle(img, (cx, y + h // 2), r, style.fg, -1, cv2.LINE_AA)
    else:  # zigzag
        xs = np.arange(x, x + w + 1, 10)
        ys = np.where(np.arange(xs.size) % 2 == 0, y + 3, y + h - 4)
        pts = np.stack([np.clip(xs, x, x + w - 1), ys], axis=1).astype(np.int32)
        cv2.polylines(img, [pts], False, style.fg, 3, cv2.LINE_AA)


def _logo(img: Image, box: tuple[int, int, int], style: TemplateStyle) -> None:
    x, y, s = box
    c = (x + s // 2, y + s // 2)
    r = s // 2 - 2
    angles = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
    if style.logo == "star":
        cv2.circle(img, c, r, style.accent, -1, cv2.LINE_AA)
        radii = np.where(np.arange(10) % 2 == 0, r * 0.85, r * 0.38)
        pts = np.stack([c[0] + radii * np.cos(angles), c[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(img, [pts.astype(np.int32)], style.fg, cv2.LINE_AA)
    elif style.logo == "diamond":
        pts = np.array([[c[0], y], [x + s, c[1]], [c[0], y + s], [x, c[1]]], np.int32)
        cv2.fillPoly(img, [pts], style.accent, cv2.LINE_AA)
        cv2.line(img, (c[0], y + s // 4), (c[0], y + 3 * s // 4), style.fg, 5, cv2.LINE_AA)
        cv2.line(img, (x + s // 4, c[1]), (x + 3 * s // 4, c[1]), style.fg, 5, cv2.LINE_AA)
    elif style.logo == "triangle":
        pts = np.array([[c[0], y], [x + s, y + s], [x, y + s]], np.int32)
        cv2.fillPoly(img, [pts], style.accent, cv2.LINE_AA)
        cv2.circle(img, (c[0], y + 2 * s // 3), s // 7, style.fg, -1, cv2.LINE_AA)
    elif style.logo == "hexagon":
        a6 = np.linspace(0, 2 * np.pi, 7)[:-1]
        pts = np.stack([c[0] + r * np.cos(a6), c[1] + r * np.sin(a6)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], style.accent, cv2.LINE_AA)
        cv2.circle(img, c, r // 2, style.fg, 4, cv2.LINE_AA)
        cv2.circle(img, c, r // 5, style.bg, -1, cv2.LINE_AA)
    elif style.logo == "rings":
        for k, colour in enumerate((style.accent, style.fg, style.accent, style.bg)):
            cv2.circle(img, c, r - k * r // 4, colour, -1, cv2.LINE_AA)
        for a in angles[::2]:
            end = (int(c[0] + r * np.cos(a)), int(c[1] + r * np.sin(a)))
            cv2.line(img, c, end, style.fg, 2, cv2.LINE_AA)
    else:  # square with a letter-like cut
        cv2.rectangle(img, (x + 2, y + 2), (x + s - 3, y + s - 3), style.accent, -1)
        cv2.rectangle(img, (x + s // 4, y + s // 4), (x + 3 * s // 4, y + 3 * s // 4), style.fg, 4)
        cv2.rectangle(img, (c[0] - 2, y + 2), (c[0] + 2, c[1]), style.bg, -1)


def _fit_text(
    img: Image,
    text: str,
    box: tuple[int, int, int, int],
    style: TemplateStyle,
    thickness: int,
    colour: BGR | None = None,
) -> None:
    """Draw ``text`` as large as fits ``box``, centred."""
    x, y, w, h = box
    if w <= 4 or h <= 4 or not text:
        return
    (tw, th), base = cv2.getTextSize(text, style.font, 1.0, thickness)
    scale = min(w / max(tw, 1), h / max(th + base, 1))
    # Strokes stay thinner than the letters are wide, or small lettering clogs into blobs.
    thickness = max(1, min(thickness, round(1 + 1.5 * scale)))
    (tw, th), base = cv2.getTextSize(text, style.font, scale, thickness)
    org = (x + (w - tw) // 2, y + (h + th - base) // 2)
    cv2.putText(img, text, org, style.font, scale, colour or style.fg, thickness, cv2.LINE_AA)


def random_style(rng: np.random.Generator, hue: float, subtitle: str) -> TemplateStyle:
    """A style whose background has ``hue`` (OpenCV hue 0–180) and everything else drawn."""
    bg = _hsv(hue, rng.uniform(150, 255), rng.uniform(110, 220))
    dark_bg = _luma(bg) < 120
    fg_hue = (hue + rng.uniform(60, 120)) % 180
    fg = _hsv(fg_hue, rng.uniform(0, 90), 245.0) if dark_bg else _hsv(fg_hue, 200.0, 40.0)
    accent = _hsv((hue + 90) % 180, 230.0, 230.0 if dark_bg else 90.0)
    return TemplateStyle(
        fg=fg,
        bg=bg,
        accent=accent,
        font=int(_FONTS[rng.integers(len(_FONTS))]),
        thickness=int(rng.integers(2, 6)),
        logo=str(_LOGOS[rng.integers(len(_LOGOS))]),
        logo_left=bool(rng.random() < 0.6),
        band=str(_BANDS[rng.integers(len(_BANDS))]),
        band_top=bool(rng.random() < 0.5),
        subtitle=subtitle,
    )


def _hsv(h: float, s: float, v: float) -> BGR:
    px = np.array([[[h, s, v]]], np.float64).round().clip(0, [179, 255, 255]).astype(np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return (int(b), int(g), int(r))


def _luma(bgr: BGR) -> float:
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r
