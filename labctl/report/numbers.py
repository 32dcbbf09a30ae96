"""How figures are written in reports: one formatter, so a number always reads the same."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from labctl.report.model import Cell, Status


def num(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals, trailing zeros dropped; ``—`` when missing."""
    if value is None or not math.isfinite(value):
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    if abs(value) >= 1e6:
        return f"{value:.4g}"
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def with_unit(value: float | None, unit: str) -> str:
    """A figure and its unit for sentences."""
    text = num(value)
    return f"{text} {unit}" if unit and text != "—" else text


def cell(
    value: float | None, key: str = "", unit: str = "", status: Status = "", digits: int = 3
) -> Cell:
    """A numeric cell that keeps the exact value next to its text."""
    return Cell(text=num(value, digits), value=value, status=status, key=key, unit=unit)


def utc(ts: float | None) -> str:
    """Epoch seconds as ``2026-06-01 00:00 UTC``."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def utc_s(ts: float | None) -> str:
    """Epoch seconds as ``2026-06-01 00:00:00 UTC``."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """A duration in words: ``30 d``, ``6 h 5 min``, ``42 s``."""
    s = round(seconds)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{d} d"] * bool(d) + [f"{h} h"] * bool(h) + [f"{m} min"] * bool(m)
    if not parts:
        return f"{sec} s"
    return " ".join(parts[:2])
