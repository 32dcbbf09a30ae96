"""Plots for reports, as embedded PNG ``data:`` URIs (matplotlib, Agg, no pyplot state).

Each function takes plain arrays and returns one image; nothing is fetched or cached, and no
global matplotlib state is touched (figures are built on their own canvases).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]

DPI = 110
COLORS = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6", "#843c0c")
REFERENCE_COLOR = "#404040"
FONT = {"family": "DejaVu Sans", "size": 8}


@dataclass(frozen=True)
class ScatterPanel:
    """Candidate (y) against reference (x) for one candidate."""

    title: str
    x: FloatArray
    y: FloatArray
    slope: float | None
    intercept: float | None
    note: str
    """Figures to print inside the panel (from the run record)."""
    background_x: FloatArray = field(default_factory=lambda: np.empty(0))
    background_y: FloatArray = field(default_factory=lambda: np.empty(0))


@dataclass(frozen=True)
class Line:
    """One line of a time-series panel: times in epoch seconds."""

    label: str
    t: FloatArray
    v: FloatArray
    reference: bool = False


@dataclass(frozen=True)
class BarGroup:
    """One metric across condition bins, one bar per candidate in each bin."""

    title: str
    bins: list[str]
    series: list[tuple[str, list[float | None], list[bool]]]
    """(candidate, value per bin, judged per bin — False: too few pairs)."""
    target: tuple[float | None, float | None] | None
    ylabel: str


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Axes) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=FONT["size"])


def scatter(panels: Sequence[ScatterPanel], unit: str, averaging: str) -> str:
    """Candidate vs reference per candidate: pairs, 1:1 line and the fitted line."""
    cols = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(2.55 * cols + 0.4, 2.55 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, p in enumerate(panels):
        ax = axes[i // cols][i % cols]
        _style(ax)
        hi = max(
            [1.0] + [float(np.max(a)) for a in (p.x, p.y, p.background_x, p.background_y) if a.size]
        )
        lim = (0.0, hi * 1.05)
        if p.background_x.size:
            ax.scatter(p.background_x, p.background_y, s=3, color="#bbbbbb", lw=0, label="1 h")
        ax.scatter(p.x, p.y, s=14, color=COLORS[i % len(COLORS)], lw=0, label=averaging)
        ax.plot(lim, lim, color="#888888", lw=0.8, ls="--", label="1:1")
        if p.slope is not None and p.intercept is not None:
            xs = np.array(lim)
            ax.plot(xs, p.intercept + p.slope * xs, color="#c00000", lw=1.2, label="fit")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_title(p.title, fontsize=8.5)
        ax.set_xlabel(f"reference ({unit})", fontsize=8)
        ax.set_ylabel(f"candidate ({unit})", fontsize=8)
        ax.text(
            0.04,
            0.96,
            p.note,
            transform=ax.transAxes,
            va="top",
            fontsize=7,
            bbox={"facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.9, "pad": 2},
        )
        ax.legend(loc="lower right", fontsize=6.5, frameon=False, markerscale=1.2)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    return _png(fig)


def time_series(panels: Sequence[tuple[str, Sequence[Line]]], ylabel: str) -> str:
    """Stacked panels sharing the time axis, each a candidate with the reference."""
    n = max(1, len(panels))
    fig = Figure(figsize=(7.4, 1.55 * n + 0.5), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)
    for i, (title, lines) in enumerate(panels):
        ax = axes[i][0]
        _style(ax)
        for line in lines:
            t = line.t.astype("datetime64[s]")
            if line.reference:
                ax.plot(t, line.v, color=REFERENCE_COLOR, lw=0.7, label=line.label)
            else:
                ax.plot(t, line.v, color=COLORS[i % len(COLORS)], lw=0.8, label=line.label)
        ax.set_title(title, fontsize=8.5, loc="left")
        ax.set_ylabel(ylabel, fontsize=7.5)
        ax.legend(loc="upper right", fontsize=6.5, frameon=False, ncols=2)
        locator = AutoDateLocator()  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    return _png(fig)


def bin_bars(groups: Sequence[BarGroup]) -> str:
    """Grouped bars per condition bin; the target as lines; unjudged bins hatched."""
    n = max(1, len(groups))
    cols = min(2, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.7 * cols, 2.5 * rows + 0.2), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for gi, g in enumerate(groups):
        ax = axes[gi // cols][gi % cols]
        _style(ax)
        k = max(1, len(g.series))
        width = 0.8 / k
        xs = np.arange(len(g.bins), dtype=np.float64)
        for si, (label, values, judged) in enumerate(g.series):
            for bi, v in enumerate(values):
                if v is None or not math.isfinite(v):
                    continue
                ax.bar(
                    xs[bi] - 0.4 + width * (si + 0.5),
                    v,
                    width,
                    color=COLORS[si % len(COLORS)] if judged[bi] else "white",
                    edgecolor=COLORS[si % len(COLORS)],
                    hatch=None if judged[bi] else "///",
                    label=label
                    if bi == 0 or not any(values[j] is not None for j in range(bi))
                    else None,
                )
        if g.target is not None:
            for bound in g.target:
                if bound is not None:
                    ax.axhline(bound, color="#c00000", lw=1, ls="--")
        ax.set_xticks(xs, [_wrap_bin(b) for b in g.bins], fontsize=6.5)
        ax.set_title(g.title, fontsize=8.5)
        ax.set_ylabel(g.ylabel, fontsize=7.5)
        ax.legend(fontsize=6, frameon=True, framealpha=0.9, loc="upper left")
    for j in range(len(groups), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    return _png(fig)


def _wrap_bin(label: str) -> str:
    """``60 % ≤ RH < 75 %`` on two lines, so neighbouring tick labels do not collide."""
    head, sep, tail = label.partition(" < ")
    return f"{head}\n< {tail}" if sep and "≤" in head else label
